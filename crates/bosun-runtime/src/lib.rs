//! What Bosun's components (controller-manager, scheduler, kubelet) share around their
//! decisions, in the shape of kube-rs's `kube-runtime`:
//!
//! - [`server`]: the component server, `/metrics` and `/healthz` on a port of its own.
//! - [`reflector`]: list + watch of one kind into a local [`reflector::Store`], relisting on
//!   410 Expired and resuming after the apiserver or a store member restarts.
//! - [`queue`]: client-go's work queue: de-duplicating, delaying, per-item exponential
//!   back-off under a global rate limit.
//! - [`controller`]: workers that take keys from a queue and run a level-triggered reconcile.
//! - [`leader`]: leader election on a `coordination.k8s.io/v1` Lease (compare-and-swap on
//!   resourceVersion), so that of two replicas only one acts.
//! - [`events`]: an event recorder writing `core/v1` Events with client-go's correlation.
//!
//! This crate talks to the apiserver only (through `bosun-api-client`), never to the store.

pub mod controller;
pub mod events;
pub mod leader;
pub mod queue;
pub mod reflector;
pub mod server;

pub use controller::{Action, run_workers};
pub use events::{Recorder, object_ref};
pub use leader::{LeaderElectionConfig, LeaderError, run_leader};
pub use queue::{QueueConfig, WorkQueue};
pub use reflector::{Event, Store, reflector};

/// Waits until `shutdown` is true. A dropped sender means shutdown can no longer be asked
/// for: this then waits forever instead of taking it for a shutdown.
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
