//! The pod side of the kubelet: one watch of the pods bound to the hosted nodes feeds a
//! de-duplicating work queue of `(node, pod)` items; each item is synced by [`Pods::sync`],
//! a level-triggered step that reads the pod from the watch cache and does what is due:
//! admit or reject it, run it and write its status (only when it changed), stop a pod being
//! deleted and then delete it for good (grace 0, on its uid), or stop what runs for a pod
//! that is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api_client::{ApiClient, ApiError, Patch};
use bosun_runtime::controller::Action;
use bosun_runtime::events::{Recorder, object_ref};
use bosun_runtime::reflector::Store;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use parking_lot::Mutex;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::admission::{self, Allocatable, Decision, Requests};
use crate::metrics::Metrics;
use crate::runtime::{Runtime, Stopped};
use crate::status;

/// One unit of work: a pod (`namespace/name`) on one of the hosted nodes (its index).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Work {
    /// Index of the node in [`Pods::nodes`].
    pub node: u32,
    /// `namespace/name`.
    pub key: String,
}

/// One hosted node, as its pods see it.
#[derive(Debug)]
pub struct NodePods<R> {
    /// The node's name.
    pub name: String,
    /// Its address (`hostIP`).
    pub host_ip: String,
    /// What its pods may use.
    pub allocatable: Allocatable,
    /// Its runtime.
    pub runtime: R,
    state: Mutex<NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    /// Pods admitted and not finished, by uid, with their requests (admission counts them).
    admitted: HashMap<String, Requests>,
    /// Pods the runtime runs: key -> uid (a pod gone from the API is found by its key).
    running: HashMap<String, String>,
    /// The status last written for each running pod, by uid (the status manager's
    /// `podStatuses`): the base of the next status, so that a sync that runs before the
    /// watch brings the pod's own write back neither writes it again nor counts the pod's
    /// start twice. Removed with the pod.
    written: HashMap<String, PodStatus>,
}

impl<R: Runtime> NodePods<R> {
    /// A node with no pod yet.
    pub fn new(name: String, host_ip: String, allocatable: Allocatable, runtime: R) -> Self {
        NodePods {
            name,
            host_ip,
            allocatable,
            runtime,
            state: Mutex::new(NodeState::default()),
        }
    }

    /// Pods the runtime runs for this node.
    pub fn running(&self) -> usize {
        self.state.lock().running.len()
    }

    /// Records a pod a previous kubelet admitted (found at start-up), so that admission
    /// counts it before any newcomer.
    pub fn readmit(&self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.clone() {
            self.state
                .lock()
                .admitted
                .insert(uid, admission::pod_requests(pod));
        }
    }

    /// Records a pod the runtime runs (found by a restarted kubelet), so that a sync adopts
    /// it or, when the apiserver no longer has it, stops it. Whether it was new.
    pub fn note_running(&self, key: &str, uid: &str) -> bool {
        self.state
            .lock()
            .running
            .insert(key.to_string(), uid.to_string())
            .is_none()
    }

    /// Admission under the node's lock, so two workers never admit past the node's room.
    fn admit(&self, uid: &str, pod: &Pod) -> Decision {
        let mut st = self.state.lock();
        if st.admitted.contains_key(uid) {
            return Decision::Admit;
        }
        if admission::was_admitted(pod) {
            st.admitted.insert(uid.into(), admission::pod_requests(pod));
            return Decision::Admit;
        }
        let d = admission::admit(pod, st.admitted.values().copied(), &self.allocatable);
        if d == Decision::Admit {
            st.admitted.insert(uid.into(), admission::pod_requests(pod));
        }
        d
    }

    fn forget(&self, key: &str, uid: &str) {
        let mut st = self.state.lock();
        st.admitted.remove(uid);
        st.written.remove(uid);
        if st.running.get(key).is_some_and(|u| u == uid) {
            st.running.remove(key);
        }
    }
}

/// A failed sync; the queue retries the item with back-off.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The apiserver refused or could not be reached.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// The runtime failed.
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// The pods of every hosted node.
pub struct Pods<R> {
    /// The apiserver.
    pub client: ApiClient,
    /// The watch cache of the pods bound to the hosted nodes.
    pub store: Store<Pod>,
    /// The hosted nodes, by index.
    pub nodes: Vec<Arc<NodePods<R>>>,
    /// Node name -> index.
    pub by_name: HashMap<String, u32>,
    /// Metrics.
    pub metrics: Metrics,
    /// The pods' events (admission rejections, runtime failures), as the kubelet records them.
    pub recorder: Recorder,
}

impl<R> std::fmt::Debug for Pods<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The pod's `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The node a pod is bound to.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl<R: Runtime> Pods<R> {
    /// The work item for a pod, if it is bound to one of the hosted nodes.
    pub fn work_for(&self, pod: &Pod) -> Option<Work> {
        let node = *self.by_name.get(node_of(pod)?)?;
        Some(Work {
            node,
            key: pod_key(pod),
        })
    }

    /// Every item the runtime runs something for (checked again after a relist, when deletes
    /// may have been missed).
    pub fn running_work(&self) -> Vec<Work> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Ok(node) = u32::try_from(i) else { break };
            for key in n.state.lock().running.keys() {
                out.push(Work {
                    node,
                    key: key.clone(),
                });
            }
        }
        out
    }

    /// One level-triggered sync of `work`.
    pub async fn sync(&self, work: Work) -> Result<Action, SyncError> {
        let Some(node) = usize::try_from(work.node)
            .ok()
            .and_then(|i| self.nodes.get(i))
        else {
            return Ok(Action::Done);
        };
        let (ns, name) = split_key(&work.key);
        let pod = self
            .store
            .get(ns, name)
            .filter(|p| node_of(p) == Some(node.name.as_str()));
        let running_uid = node.state.lock().running.get(&work.key).cloned();
        let Some(pod) = pod else {
            // Gone from the apiserver (or bound elsewhere): stop what still runs.
            if let Some(uid) = running_uid {
                return self.stop_gone(node, &work.key, &uid).await;
            }
            return Ok(Action::Done);
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(old) = running_uid.filter(|u| *u != uid) {
            // An older pod of the same name still runs: it goes first.
            if let Action::RequeueAfter(d) = self.stop_gone(node, &work.key, &old).await? {
                return Ok(Action::RequeueAfter(d));
            }
        }
        if status::pod_is_terminal(&pod) {
            return self.finish_terminal(node, &work.key, &uid, &pod).await;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(node, &work.key, &uid, &pod).await;
        }
        if let Decision::Reject { reason, message } = node.admit(&uid, &pod) {
            info!(node = %node.name, pod = %work.key, %reason, "pod rejected at admission");
            self.metrics.pods_rejected.inc();
            self.recorder
                .warning(&object_ref(&*pod), &reason, message.clone());
            let merged = status::merge(
                pod.status.as_ref(),
                status::rejected(&reason, &message),
                Timestamp::now(),
            );
            self.write_status(&pod, &merged).await?;
            return Ok(Action::Done);
        }
        let observed = match node.runtime.sync_pod(&pod).await {
            Ok(o) => o,
            Err(e) => {
                self.recorder
                    .warning(&object_ref(&*pod), &e.reason, e.message.clone());
                return Err(e.into());
            }
        };
        {
            let mut st = node.state.lock();
            if st.running.insert(work.key.clone(), uid.clone()).is_none() {
                self.metrics.running_pods.inc();
            }
        }
        let generated = status::generate(&pod, &observed, &node.host_ip, false);
        // What this kubelet wrote last is newer than the watch's copy until the watch brings
        // it back (Kubernetes' status manager merges with its own cache the same way).
        let last = node.state.lock().written.get(&uid).cloned();
        let base = last.as_ref().or(pod.status.as_ref());
        let merged = status::merge(base, generated, Timestamp::now());
        if status::needs_update(base, &merged) {
            let was_running = base.and_then(|s| s.phase.as_deref()) == Some("Running");
            self.write_status(&pod, &merged).await?;
            {
                let mut st = node.state.lock();
                if st.running.get(&work.key).is_some_and(|u| *u == uid) {
                    st.written.insert(uid.clone(), merged.clone());
                }
            }
            if !was_running
                && merged.phase.as_deref() == Some("Running")
                && let Some(created) = &pod.metadata.creation_timestamp
            {
                let secs = Timestamp::now().duration_since(created.0).as_secs_f64();
                self.metrics.pod_start_seconds.observe(secs.max(0.0));
            }
        }
        // A back-off that ends (a container's restart, an image pull) needs a sync then.
        Ok(observed
            .resync_after
            .map_or(Action::Done, Action::RequeueAfter))
    }

    /// Writes `merged` as the pod's status (a merge patch naming the pod's uid). A pod that
    /// is gone, or was replaced by one of the same name, is left alone.
    async fn write_status(
        &self,
        pod: &Pod,
        merged: &k8s_openapi::api::core::v1::PodStatus,
    ) -> Result<(), SyncError> {
        let (ns, name) = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let patch = Patch::Merge(status::status_patch(uid, merged));
        match self.client.patch_status::<Pod>(ns, name, &patch).await {
            Ok(_) => {
                self.metrics.pod_status_writes.inc();
                Ok(())
            }
            Err(e) if e.is_not_found() || e.code == 422 => {
                debug!(pod = %name, error = %e, "pod gone or replaced; status not written");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stops what runs for a pod no longer in the apiserver.
    async fn stop_gone(
        &self,
        node: &NodePods<R>,
        key: &str,
        uid: &str,
    ) -> Result<Action, SyncError> {
        match node.runtime.kill_pod(uid, Duration::ZERO).await? {
            Stopped::InProgress(d) => Ok(Action::RequeueAfter(d)),
            Stopped::Done(_) => {
                node.forget(key, uid);
                self.metrics.running_pods.dec();
                debug!(node = %node.name, pod = %key, "stopped a pod that is gone");
                Ok(Action::Done)
            }
        }
    }

    /// A finished pod: nothing may run for it; once deleted, it is removed for good.
    async fn finish_terminal(
        &self,
        node: &NodePods<R>,
        key: &str,
        uid: &str,
        pod: &Pod,
    ) -> Result<Action, SyncError> {
        if node.state.lock().running.contains_key(key) {
            if let Stopped::InProgress(d) = node.runtime.kill_pod(uid, Duration::ZERO).await? {
                return Ok(Action::RequeueAfter(d));
            }
            self.metrics.running_pods.dec();
        }
        node.forget(key, uid);
        if pod.metadata.deletion_timestamp.is_some() {
            self.delete_for_good(key, uid).await?;
        }
        Ok(Action::Done)
    }

    /// Graceful deletion: stop the pod within its grace period, write its final status,
    /// then delete it with grace 0 on its uid (what the kubelet's status manager does once a
    /// deleted pod's containers are gone).
    async fn terminate(
        &self,
        node: &NodePods<R>,
        key: &str,
        uid: &str,
        pod: &Pod,
    ) -> Result<Action, SyncError> {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .and_then(|g| u64::try_from(g).ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        let was_running = node.state.lock().running.contains_key(key);
        let last = match node.runtime.kill_pod(uid, grace).await? {
            Stopped::InProgress(d) => return Ok(Action::RequeueAfter(d)),
            Stopped::Done(last) => last,
        };
        if was_running {
            self.metrics.running_pods.dec();
        }
        node.forget(key, uid);
        let generated = status::generate(pod, &last, &node.host_ip, true);
        let merged = status::merge(pod.status.as_ref(), generated, Timestamp::now());
        if status::needs_update(pod.status.as_ref(), &merged) {
            self.write_status(pod, &merged).await?;
        }
        self.delete_for_good(key, uid).await?;
        Ok(Action::Done)
    }

    async fn delete_for_good(&self, key: &str, uid: &str) -> Result<(), SyncError> {
        let (ns, name) = split_key(key);
        let options = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
        match self.client.delete::<Pod>(ns, name, Some(&options)).await {
            Ok(_) => {
                self.metrics.pods_deleted.inc();
                debug!(pod = %key, "pod deleted");
                Ok(())
            }
            // Already gone, or a new pod took the name: nothing of ours is left.
            Err(e) if e.is_not_found() || e.code == 409 => Ok(()),
            Err(e) => {
                warn!(pod = %key, error = %e, "delete stopped pod");
                Err(e.into())
            }
        }
    }
}
