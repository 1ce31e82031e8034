//! The container runtime the kubelet drives, behind one trait: the hollow runtime
//! ([`crate::fake`]) today, containerd through CRI next (issue 18). The kubelet's node, lease,
//! admission and pod-status code is the same over both; only what a pod "is" on the node
//! comes from here, in the shape of kubelet's `kubecontainer.PodStatus`.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use crate::node::NodeHealth;

/// What the runtime observes of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container's name in the pod spec.
    pub name: String,
    /// `<runtime>://<id>`, as the pod status shows it.
    pub id: String,
    /// The image the spec asked for.
    pub image: String,
    /// The image actually run (`<repo>@sha256:...` on containerd).
    pub image_id: String,
    /// Its state.
    pub state: ContainerState,
    /// Times the kubelet restarted it.
    pub restart_count: i32,
    /// The previous run's state (`lastState`), when it ran before.
    pub last_state: Option<ContainerState>,
    /// Passed its readiness probe (or has none and runs).
    pub ready: bool,
    /// Passed its startup probe (or has none and runs).
    pub started: bool,
}

/// A container's state, as CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not started yet: `reason` says why (`ContainerCreating`, `ImagePullBackOff`, ...).
    Waiting {
        /// Kubernetes' reason.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Running since `started_at`.
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// Exited.
    Terminated {
        /// Its exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, ...
        reason: String,
        /// When it started.
        started_at: Timestamp,
        /// When it exited.
        finished_at: Timestamp,
    },
}

/// What the runtime observes of one pod on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodStatus {
    /// The sandbox's addresses (the host's for `hostNetwork` pods); empty until it has them.
    pub ips: Vec<String>,
    /// The sandbox exists and its network is set up (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// Init containers, in spec order.
    pub init_containers: Vec<ContainerStatus>,
    /// Containers, in spec order.
    pub containers: Vec<ContainerStatus>,
    /// Sync the pod again after this long even if nothing changes (a back-off ends).
    pub resync_after: Option<Duration>,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Every container stopped and the sandbox is gone (its address freed): the containers'
    /// last states, for the pod's final status (empty for a pod the runtime did not have).
    Done(PodStatus),
    /// Still stopping (the containers have their grace period): ask again after this long.
    InProgress(Duration),
}

/// A runtime failure, with Kubernetes' reason for the pod's events and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct RuntimeError {
    /// `FailedCreatePodSandBox`, `NoAddress`, ...
    pub reason: String,
    /// Detail.
    pub message: String,
}

/// A container runtime for the pods of one node.
pub trait Runtime: Send + Sync + 'static {
    /// `containerRuntimeVersion` in the node's status (`fake://0.1.0`, `containerd://1.7.24`).
    fn version(&self) -> String;

    /// Brings `pod` to its spec (sandbox, network, containers started) and returns what it
    /// observes after. Idempotent: called again for a running pod, it only observes.
    fn sync_pod(&self, pod: &Pod) -> impl Future<Output = Result<PodStatus, RuntimeError>> + Send;

    /// Stops the pod `uid` within `grace`, then removes its sandbox and frees its address.
    /// Idempotent: a pod the runtime does not have is `Done`.
    fn kill_pod(
        &self,
        uid: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<Stopped, RuntimeError>> + Send;

    /// The pods the runtime has, by uid (what a restarted kubelet finds and adopts or kills).
    fn pod_uids(&self) -> Vec<String>;

    /// Lists what runs and returns the pods whose containers changed since the last call
    /// (died, vanished, appeared), as `(uid, namespace/name)`: the kubelet's PLEG relist.
    /// A runtime that only changes when synced (the hollow one) reports nothing.
    fn relist(&self) -> impl Future<Output = Vec<(String, String)>> + Send {
        async { Vec::new() }
    }

    /// The node's health as the runtime and the host see it (runtime and network ready,
    /// memory, disk and PID pressure).
    fn node_health(&self) -> impl Future<Output = NodeHealth> + Send {
        async { NodeHealth::healthy() }
    }
}
