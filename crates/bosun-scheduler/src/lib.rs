//! The scheduler's decision core, free of I/O: given a [`Snapshot`] of the nodes and the pods on
//! them and a [`PreparedPod`], [`Scheduler::schedule_one`] picks the node Kubernetes'
//! kube-scheduler (default profile) would pick, or explains, in Kubernetes' words, why none
//! fits. The scheduling loop around it only watches, binds and records; the one API call per
//! pod is the bind.
//!
//! What reproduces what in kubernetes/kubernetes (pkg/scheduler unless noted):
//! - [`snapshot`]: backend/cache (`NodeInfo` accounting, `nodeTree` zone interleaving,
//!   `AssumePod` / `ForgetPod`).
//! - [`PreparedPod`]: the plugins' PreFilter / PreScore state, computed once per pod;
//!   requests as component-helpers/resource `PodRequests` (sum of containers, raised to the
//!   largest init container need, sidecars, overhead; 100m / 200Mi defaults for scoring).
//! - filters, in the default profile's order: NodeUnschedulable, NodeName, TaintToleration
//!   (NoSchedule, NoExecute), NodeAffinity (nodeSelector and required affinity: In, NotIn,
//!   Exists, DoesNotExist, Gt, Lt, `metadata.name` fields), NodePorts, NodeResourcesFit (cpu,
//!   memory, ephemeral storage, pods, extended resources), PodTopologySpread (DoNotSchedule).
//! - scores with the default weights: TaintToleration x3 (PreferNoSchedule), NodeAffinity x2
//!   (preferred terms), PodTopologySpread x2 (ScheduleAnyway, and system-default spreading of
//!   the pod's owner, which replaced SelectorSpread), NodeResourcesFit x1 (LeastAllocated),
//!   NodeResourcesBalancedAllocation x1; `DefaultNormalizeScore` and the spread normalisation.
//! - schedule_one.go: `numFeasibleNodesToFind` with `percentageOfNodesToScore` (adaptive by
//!   default), the rotating start index, the nominated node first, `selectHost` (ties broken
//!   at random by a [`RandomSource`] the caller seeds), and `FitError`'s
//!   "0/N nodes are available: ..." message (reasons counted, sorted).
//!
//! The scheduling loop around the core (`bosun scheduler`) is in [`run`]: [`watcher`] lists
//! and watches nodes and pods into the snapshot and the [`queue`] (kube-scheduler's
//! `PriorityQueue`, itself pure), one pod at a time goes through the core, is assumed and is
//! bound in the background with bounded concurrency; [`report`] writes the pod condition and
//! events, [`metrics`] counts. Only those modules do I/O; the decision modules stay pure.
//!
//! Not reproduced: inter-pod affinity, image locality, volumes, preemption (so no "preemption:"
//! suffix in messages), pod-level resources and in-place resize (`status.resources`), scheduler
//! extenders, and validation of label and resource name syntax (the apiserver's job).

mod affinity;
mod filter;
pub mod metrics;
mod node;
mod pod;
mod quantity;
pub mod queue;
pub mod report;
mod resources;
pub mod run;
mod schedule;
pub mod score;
mod selector;
pub mod snapshot;
mod taints;
pub mod watcher;

pub use filter::FitError;
pub use node::{LABEL_HOSTNAME, LABEL_TOPOLOGY_REGION, LABEL_TOPOLOGY_ZONE};
pub use pod::{DefaultSelector, HostPort, PreparedPod, default_spread_selector, pod_key};
pub use resources::{
    DEFAULT_MEMORY_REQUEST, DEFAULT_MILLI_CPU_REQUEST, MAX_POD_SCALAR_RESOURCES, PodRequests,
    Resources,
};
pub use schedule::{
    MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND, MIN_FEASIBLE_NODES_TO_FIND, NodeScores, RandomSource,
    ScheduleError, ScheduleResult, Scheduler, SchedulerConfig, SplitMix64,
    num_feasible_nodes_to_find, select_host,
};
pub use snapshot::{NodeUsage, Snapshot};

/// Errors from preparing pods and maintaining the snapshot.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A resource quantity that is not a Kubernetes quantity.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
    )]
    InvalidQuantity(String),
    /// A quantity too large to account for.
    #[error("quantity too large: {0:?}")]
    QuantityTooLarge(String),
    /// A label selector that does not parse.
    #[error("invalid label selector: {0}")]
    InvalidSelector(String),
    /// Preferred node affinity that does not parse.
    #[error("invalid node affinity: {0}")]
    InvalidAffinity(String),
    /// An object without a name.
    #[error("{0} has no name")]
    MissingName(&'static str),
    /// A pod requesting more extended resources than the scheduler tracks per pod.
    #[error(
        "pod requests {0} extended resources, more than the {MAX_POD_SCALAR_RESOURCES} supported"
    )]
    TooManyExtendedResources(usize),
    /// `AssumePod` of a pod already in the cache.
    #[error("pod {0} is in the cache, so can't be assumed")]
    AlreadyInCache(String),
    /// `ForgetPod` of a pod that is not assumed.
    #[error("pod {0} wasn't assumed so cannot be forgotten")]
    NotAssumed(String),
    /// A node the snapshot does not have.
    #[error("node {0:?} not found")]
    NodeNotFound(String),
    /// A node the filters reject, with their reasons.
    #[error("node rejected: {}", .0.join(", "))]
    Rejected(Vec<String>),
}
