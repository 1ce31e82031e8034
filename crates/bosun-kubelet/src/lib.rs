//! The kubelet (`bosun kubelet`): registers its node, keeps the node's Lease and status,
//! admits the pods bound to it and runs them through a container runtime, and writes their
//! status back, all through the apiserver (`bosun-api-client`), as Kubernetes' kubelet does.
//!
//! Today's runtime is the hollow one (`--runtime fake`, [`fake`]): pods "run" at once, so one
//! process can host thousands of nodes (`--node-count`, as kwok does) for tests and
//! benchmarks. The CRI runtime (containerd) comes with issue 18 behind the same [`Runtime`]
//! trait; the node, lease, admission and pod-status code here is what it will share:
//!
//! - [`node`]: the Node object and its status (pure);
//! - [`lease`]: the node Lease and its renewal;
//! - [`status`]: the pod status from what the runtime observes (pure, kubelet's
//!   `generateAPIPodStatus` and status manager);
//! - [`admission`]: the resource admission of a pod (pure);
//! - [`cidr`]: pod ranges and the address allocator (pure);
//! - [`pods`]: the per-pod sync, fed by one pod watch and a de-duplicating work queue;
//! - [`server`]: the kubelet's `/containerLogs` and `/exec` routes (the log core is pure);
//! - [`kubelet`]: `run()`, which wires them for every hosted node.
//!
//! The crate talks to the apiserver only; it never links the store or its client.

#![warn(missing_docs)]

pub mod admission;
pub mod cidr;
pub mod config;
pub mod cri;
pub mod eviction;
pub mod fake;
pub mod kubelet;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod pods;
pub mod probe;
pub mod quantity;
pub mod runtime;
pub mod server;
pub mod status;

pub use config::{KubeletConfig, RuntimeKind};
pub use kubelet::run;
pub use runtime::Runtime;
