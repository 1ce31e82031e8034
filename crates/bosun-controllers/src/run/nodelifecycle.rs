//! The node lifecycle controller's loop (`node_lifecycle_controller.go`'s
//! `monitorNodeHealth`, with the taint eviction controller of `taint_eviction.go`): every
//! `--node-monitor-period` it reads the Node, Lease and Pod caches, marks nodes whose Lease
//! and status stopped moving Unknown (with a `NodeNotReady` event and their pods'
//! Ready=False), keeps the condition taints in step with the conditions, and every second it
//! deletes the pods that NoExecute taints evict, now or when their toleration runs out
//! (`TaintManagerEviction`). The decisions are [`crate::nodelifecycle`]'s; what is held here
//! (when each node was last seen alive, the deletions scheduled) is bounded by the nodes
//! and pods in the caches and rebuilt from scratch by a new leader.

use std::collections::HashMap;
use std::time::Duration;

use bosun_api_client::ApiClient;
use bosun_runtime::events::{Recorder, object_ref};
use bosun_runtime::reflector::Store;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::nodelifecycle::{
    self, Eviction, NodeHealth, Scheduled, desired_taints, grace_period, observe, pod_eviction,
    stale_conditions,
};

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// How often pending evictions are looked at.
const EVICTION_TICK: Duration = Duration::from_secs(1);

/// The controller's timings (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`.
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub monitor_grace: Duration,
    /// `--node-startup-grace-period`.
    pub startup_grace: Duration,
}

/// The node lifecycle and taint eviction controllers.
pub struct NodeLifecycleController {
    client: ApiClient,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    cfg: NodeLifecycleConfig,
    node_recorder: Recorder,
    eviction_recorder: Recorder,
    health: Mutex<HashMap<String, NodeHealth>>,
    scheduled: Mutex<HashMap<String, Scheduled>>,
}

impl std::fmt::Debug for NodeLifecycleController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLifecycleController")
            .field("cfg", &self.cfg)
            .field("nodes", &self.health.lock().len())
            .field("scheduled", &self.scheduled.lock().len())
            .finish_non_exhaustive()
    }
}

fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

impl NodeLifecycleController {
    /// A controller over these caches; `node_recorder` writes as `node-controller`,
    /// `eviction_recorder` as `taint-eviction-controller`.
    pub fn new(
        client: ApiClient,
        (nodes, leases, pods): (Store<Node>, Store<Lease>, Store<Pod>),
        cfg: NodeLifecycleConfig,
        node_recorder: Recorder,
        eviction_recorder: Recorder,
    ) -> Self {
        NodeLifecycleController {
            client,
            nodes,
            leases,
            pods,
            cfg,
            node_recorder,
            eviction_recorder,
            health: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(HashMap::new()),
        }
    }

    /// Runs both passes until `stop` flips.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut monitor = tokio::time::interval(self.cfg.monitor_period);
        let mut evict = tokio::time::interval(EVICTION_TICK);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let monitor_now = tokio::select! {
                _ = monitor.tick() => true,
                _ = evict.tick() => false,
                _ = stop.wait_for(|s| *s) => return,
            };
            if monitor_now {
                self.monitor_node_health().await;
            } else {
                self.taint_eviction_pass().await;
            }
        }
    }

    /// `monitorNodeHealth`: one pass over every node.
    pub async fn monitor_node_health(&self) {
        let nodes = self.nodes.list();
        {
            let mut health = self.health.lock();
            health.retain(|name, _| self.nodes.get("", name).is_some());
        }
        for node in nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            if let Err(e) = self.monitor_one(&name, &node).await {
                warn!(node = %name, error = %e, "update node health");
            }
        }
    }

    async fn monitor_one(&self, name: &str, node: &Node) -> anyhow::Result<()> {
        let now = Timestamp::now();
        let lease = self.leases.get(NODE_LEASE_NAMESPACE, name);
        let health = {
            let mut all = self.health.lock();
            let h = observe(all.get(name), node, lease.as_deref(), now);
            all.insert(name.to_string(), h.clone());
            h
        };
        let grace = grace_period(node, self.cfg.monitor_grace, self.cfg.startup_grace);
        let observed_ready = nodelifecycle::ready_status(node).map(str::to_string);
        let mut current = node.clone();
        if let Some(conditions) = stale_conditions(node, &health, grace, now) {
            current
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(conditions);
            current = self.client.update_status("", &current).await?;
            // What we wrote is no probe of the kubelet.
            if let Some(h) = self.health.lock().get_mut(name) {
                h.ready = nodelifecycle::condition(&current, "Ready").cloned();
            }
            info!(node = %name, "node stopped posting status: conditions Unknown");
            if observed_ready.as_deref() == Some("True") {
                self.node_recorder.normal(
                    &object_ref(&current),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                self.mark_pods_not_ready(name).await;
            }
        }
        if let Some(taints) = desired_taints(&current, now) {
            debug!(node = %name, ?taints, "node taints");
            current.spec.get_or_insert_with(Default::default).taints =
                (!taints.is_empty()).then_some(taints);
            self.client.update("", &current).await?;
        }
        Ok(())
    }

    /// `MarkPodsNotReady`: the Ready condition of every pod on the node goes False.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Timestamp::now();
        let pods = self
            .pods
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
        for pod in pods {
            let mut p = Pod::clone(&pod);
            let Some(conds) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
                continue;
            };
            let Some(ready) = conds.iter_mut().find(|c| c.type_ == "Ready") else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            *ready = PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(Time(now)),
                ..ready.clone()
            };
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            if let Err(e) = self.client.update_status(&ns, &p).await {
                warn!(pod = ?p.metadata.name, error = %e, "mark pod not ready");
            }
        }
    }

    /// The taint eviction controller's pass over every pod on a node.
    pub async fn taint_eviction_pass(&self) {
        let now = Timestamp::now();
        let pods = self.pods.list();
        let mut delete = Vec::new();
        {
            let mut scheduled = self.scheduled.lock();
            scheduled.retain(|key, _| {
                let (ns, name) = super::split_key(key);
                self.pods.get(ns, name).is_some()
            });
            for pod in &pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(spec) = pod.spec.as_ref() else {
                    continue;
                };
                let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let taints = self
                    .nodes
                    .get("", node)
                    .and_then(|n| n.spec.as_ref().and_then(|s| s.taints.clone()))
                    .unwrap_or_default();
                let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                let name = pod.metadata.name.as_deref().unwrap_or("");
                let key = format!("{ns}/{name}");
                let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
                match pod_eviction(tolerations, &taints, scheduled.get(&key), now) {
                    Eviction::Keep => {}
                    Eviction::Schedule(s) => {
                        debug!(pod = %key, fire = %s.fire, "eviction scheduled");
                        scheduled.insert(key, s);
                    }
                    Eviction::Cancel => {
                        scheduled.remove(&key);
                        self.eviction_recorder.normal(
                            &pod_ref(ns, name),
                            "TaintManagerEviction",
                            format!("Cancelling deletion of Pod {key}"),
                        );
                    }
                    Eviction::DeleteNow => {
                        scheduled.remove(&key);
                        delete.push((ns.to_string(), name.to_string(), pod.metadata.uid.clone()));
                    }
                }
            }
        }
        for (ns, name, uid) in delete {
            self.eviction_recorder.normal(
                &pod_ref(&ns, &name),
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            );
            // Only the pod that was judged (a namesake created since keeps its life).
            let options = serde_json::json!({"preconditions": {"uid": uid}});
            match self.client.delete::<Pod>(&ns, &name, Some(&options)).await {
                Ok(_) => info!(pod = %format!("{ns}/{name}"), "evicted by NoExecute taint"),
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => warn!(pod = %format!("{ns}/{name}"), error = %e, "evict pod"),
            }
        }
    }
}
