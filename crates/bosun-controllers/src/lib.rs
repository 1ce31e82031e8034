//! The decision cores of Bosun's controller-manager: what the deployment and replicaset
//! controllers decide to do, as pure functions of the objects they see and the time `now`.
//!
//! Each core reproduces a Kubernetes function (named in the module docs) and returns a plan:
//! the writes Kubernetes' controller would make in that sync, in order. The loops around
//! these cores (watch, cache, work queue, apiserver writes) live elsewhere and stay thin: they
//! apply a plan's actions in order and stop at the first failure, then sync again later, as
//! Kubernetes' controllers do when a write fails.
//!
//! - [`podutil`]: `IsPodReady`, `IsPodAvailable`, `IsPodActive`, controller references and the
//!   claim decision of `ClaimObject` (adopt, release, ignore), shared by both controllers.
//! - [`deployment`]: `pkg/controller/deployment` (sync, rolling, recreate, progress,
//!   rollback) and `deployment/util/deployment_util.go`.
//! - [`replicaset`]: `pkg/controller/replicaset` (`manageReplicas`, `getPodsToDelete`,
//!   `slowStartBatch`, `calculateStatus`) and the expectations of `controller_utils.go`.
//! - [`selector`]: the one label-selector match these controllers need.
//! - [`garbagecollector`]: `attemptToDeleteItem` and the foreground/orphan finalizers of
//!   `pkg/controller/garbagecollector`, over owner states.
//! - [`namespace`]: the namespace controller's conditions and finalizing of
//!   `pkg/controller/namespace/deletion`.
//! - [`nodelifecycle`]: `pkg/controller/nodelifecycle` and `tainteviction`: node health from
//!   Leases, the condition taints, and which pods NoExecute taints evict, and when.
//! - [`run`]: `bosun controller-manager`, the loops around the cores: informers, handlers
//!   (themselves pure: [`run::handlers`]), work queues, workers that apply the plans through
//!   the apiserver, leader election. The cores above never import it.
//!
//! Fields that Kubernetes' apiserver defaults (replicas, strategy, revisionHistoryLimit,
//! progressDeadlineSeconds) are read with the apps/v1 defaults when absent, so an object
//! that skipped defaulting behaves as the defaulted one would.

pub mod deployment;
pub mod garbagecollector;
pub mod namespace;
pub mod nodelifecycle;
pub mod podutil;
pub mod replicaset;
pub mod run;
pub mod selector;

#[cfg(test)]
mod testutil;

pub use jiff::Timestamp;
