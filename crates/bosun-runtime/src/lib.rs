//! What Bosun's components (controller-manager, scheduler, kubelet) share around their
//! decisions, in the shape of kube-rs's `kube-runtime`:
//!
//! - [`server`]: the component server, `/metrics` and `/healthz` on a port of its own.
//!
//! The controller runtime (list + watch into a cache, a de-duplicating work queue with
//! back-off, leader election on a Lease, an event recorder) comes here too. This crate talks
//! to the apiserver only (through `bosun-api-client`), never to the store.

pub mod server;
