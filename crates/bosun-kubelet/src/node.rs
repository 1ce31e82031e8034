//! The Node object the kubelet registers and the status it keeps, as pure functions (kubelet's
//! `initialNode` and its node status setters): labels, capacity and allocatable, addresses,
//! daemon endpoints, node info, the pressure and Ready conditions, and the decision to write
//! the status again (only when it changed, or when the report interval has passed).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::status::whole_seconds;

/// The kubelet version nodes report: the Kubernetes API level Bosun serves.
pub const KUBELET_VERSION: &str = concat!("v1.33.0+bosun-", env!("CARGO_PKG_VERSION"));

/// What describes one node, fixed for the kubelet's life.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeParams {
    /// The node's name (and `kubernetes.io/hostname`).
    pub name: String,
    /// Its pod range (`spec.podCIDR`), if it has one.
    pub pod_cidr: Option<String>,
    /// Its address (`InternalIP`).
    pub internal_ip: String,
    /// Capacity: CPU, memory, pods (and whatever else the runtime reports).
    pub capacity: BTreeMap<String, String>,
    /// Allocatable: capacity less what is reserved and the eviction thresholds (empty: the
    /// capacity, as on a hollow node).
    pub allocatable: BTreeMap<String, String>,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// The port the kubelet serves on (`daemonEndpoints.kubeletEndpoint`; logs go there).
    pub kubelet_port: i32,
    /// `containerRuntimeVersion`.
    pub runtime_version: String,
    /// `osImage`.
    pub os_image: String,
    /// `kernelVersion`.
    pub kernel_version: String,
    /// `machineID`, `systemUUID` and `bootID`.
    pub machine_id: String,
    /// `bootID`.
    pub boot_id: String,
}

/// What the node's health checks found (the fake runtime always reports a healthy node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// Memory is short (eviction threshold crossed).
    pub memory_pressure: bool,
    /// Disk is short.
    pub disk_pressure: bool,
    /// Process IDs are short.
    pub pid_pressure: bool,
    /// Why the node is not ready (runtime or network down); `None` when it is ready.
    pub not_ready: Option<String>,
}

impl NodeHealth {
    /// Nothing wrong.
    pub fn healthy() -> Self {
        NodeHealth {
            memory_pressure: false,
            disk_pressure: false,
            pid_pressure: false,
            not_ready: None,
        }
    }
}

/// `amd64`, `arm64`: Go's names for the architecture, as nodes label themselves.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The node the kubelet registers (`initialNode`), with its first status.
pub fn initial_node(p: &NodeParams, health: &NodeHealth, now: Timestamp) -> Node {
    let mut labels: BTreeMap<String, String> = BTreeMap::from([
        ("kubernetes.io/hostname".into(), p.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), go_arch().into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), go_arch().into()),
    ]);
    labels.extend(p.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                "true".into(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: p.pod_cidr.clone(),
            pod_cidrs: p.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(node_status(p, None, health, now)),
    }
}

fn condition(
    type_: &str,
    bad: bool,
    (bad_reason, bad_msg): (&str, &str),
    (good_reason, good_msg): (&str, &str),
) -> NodeCondition {
    let (status, reason, message) = if bad {
        ("True", bad_reason, bad_msg)
    } else {
        ("False", good_reason, good_msg)
    };
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// The node's status at `now`: what the setters produce, with each condition's
/// `lastTransitionTime` kept from `old` while its status holds and `lastHeartbeatTime` now.
pub fn node_status(
    p: &NodeParams,
    old: Option<&NodeStatus>,
    health: &NodeHealth,
    now: Timestamp,
) -> NodeStatus {
    let now = Time(whole_seconds(now));
    let capacity: BTreeMap<String, Quantity> = p
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect();
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            health.memory_pressure,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        condition(
            "DiskPressure",
            health.disk_pressure,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        condition(
            "PIDPressure",
            health.pid_pressure,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        // Ready last: old clients read the last condition as the node's readiness.
        match &health.not_ready {
            None => NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("kubelet is posting ready status".into()),
                ..Default::default()
            },
            Some(why) => NodeCondition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some("KubeletNotReady".into()),
                message: Some(why.clone()),
                ..Default::default()
            },
        },
    ];
    let old_conditions = old
        .and_then(|o| o.conditions.as_deref())
        .unwrap_or_default();
    for c in &mut conditions {
        c.last_heartbeat_time = Some(now.clone());
        c.last_transition_time = old_conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            .and_then(|o| o.last_transition_time.clone())
            .or(Some(now.clone()));
    }
    NodeStatus {
        allocatable: Some(if p.allocatable.is_empty() {
            capacity.clone()
        } else {
            p.allocatable
                .iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        }),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: p.internal_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: p.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: p.kubelet_port,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: p.boot_id.clone(),
            container_runtime_version: p.runtime_version.clone(),
            kernel_version: p.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: p.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: p.os_image.clone(),
            system_uuid: p.machine_id.clone(),
            ..Default::default()
        }),
        conditions: Some(conditions),
        // What the apiserver has and the kubelet does not set (images, volumes) stays.
        images: old.and_then(|o| o.images.clone()),
        volumes_attached: old.and_then(|o| o.volumes_attached.clone()),
        volumes_in_use: old.and_then(|o| o.volumes_in_use.clone()),
        ..Default::default()
    }
}

/// kubelet's `nodeStatusHasChanged`: whether `new` differs from `old` other than in the
/// conditions' heartbeat times.
pub fn status_changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(old) != strip(new)
}

/// Whether to write `new` now: it changed, or `report_every` passed since the last write
/// (kubelet's `nodeStatusReportFrequency`, so the heartbeat times stay fresh).
pub fn should_report(
    old: Option<&NodeStatus>,
    new: &NodeStatus,
    last_report: Timestamp,
    now: Timestamp,
    report_every: std::time::Duration,
) -> bool {
    let due = now.duration_since(last_report).unsigned_abs() >= report_every;
    due || status_changed(old, new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn params() -> NodeParams {
        NodeParams {
            name: "hollow-0".into(),
            pod_cidr: Some("10.244.0.0/24".into()),
            internal_ip: "127.0.0.1".into(),
            capacity: BTreeMap::from([
                ("cpu".into(), "32".into()),
                ("memory".into(), "256Gi".into()),
                ("pods".into(), "110".into()),
            ]),
            allocatable: BTreeMap::new(),
            labels: BTreeMap::from([("topology.kubernetes.io/zone".into(), "z1".into())]),
            kubelet_port: 10250,
            runtime_version: "fake://0.1.0".into(),
            os_image: "Bosun hollow node".into(),
            kernel_version: String::new(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn the_registered_node_is_ready_with_its_capacity_addresses_and_range() {
        let n = initial_node(&params(), &NodeHealth::healthy(), at(0));
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/hostname"],
            "hollow-0"
        );
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(v["metadata"]["labels"]["topology.kubernetes.io/zone"], "z1");
        assert_eq!(v["spec"]["podCIDR"], "10.244.0.0/24");
        assert_eq!(v["spec"]["podCIDRs"][0], "10.244.0.0/24");
        let st = &v["status"];
        assert_eq!(st["capacity"]["cpu"], "32");
        assert_eq!(st["allocatable"]["memory"], "256Gi");
        assert_eq!(st["addresses"][0]["type"], "InternalIP");
        assert_eq!(st["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(st["nodeInfo"]["containerRuntimeVersion"], "fake://0.1.0");
        assert!(
            st["nodeInfo"]["kubeletVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.33.0")
        );
        let types: Vec<&str> = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(st["conditions"][3]["status"], "True");
        assert_eq!(st["conditions"][3]["reason"], "KubeletReady");
        assert_eq!(
            st["conditions"][3]["message"],
            "kubelet is posting ready status"
        );
        assert_eq!(st["conditions"][0]["status"], "False");
        assert_eq!(st["conditions"][0]["reason"], "KubeletHasSufficientMemory");
    }

    #[test]
    fn transitions_keep_their_time_heartbeats_move() {
        let p = params();
        let first = node_status(&p, None, &NodeHealth::healthy(), at(0));
        let again = node_status(&p, Some(&first), &NodeHealth::healthy(), at(10));
        let ready = |s: &NodeStatus| s.conditions.as_ref().unwrap()[3].clone();
        assert_eq!(ready(&again).last_transition_time, Some(Time(at(0))));
        assert_eq!(ready(&again).last_heartbeat_time, Some(Time(at(10))));
        assert!(
            !status_changed(Some(&first), &again),
            "only heartbeats moved"
        );
        assert!(!should_report(
            Some(&first),
            &again,
            at(0),
            at(10),
            std::time::Duration::from_secs(300)
        ));
        assert!(should_report(
            Some(&first),
            &again,
            at(0),
            at(300),
            std::time::Duration::from_secs(300)
        ));

        let sick = NodeHealth {
            not_ready: Some("container runtime is down".into()),
            ..NodeHealth::healthy()
        };
        let down = node_status(&p, Some(&again), &sick, at(20));
        assert!(status_changed(Some(&again), &down));
        assert_eq!(ready(&down).status, "False");
        assert_eq!(ready(&down).reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready(&down).last_transition_time, Some(Time(at(20))));
        assert!(status_changed(None, &down));
    }
}
