//! The node lifecycle controller's loop (`node_lifecycle_controller.go`'s
//! `monitorNodeHealth`, with the taint eviction controller of `taint_eviction.go`): every
//! `--node-monitor-period` it reads the Node, Lease and Pod caches, records the nodes it sees
//! appear and go (`RegisteredNode`, `RemovingNode`), marks nodes whose Lease
//! and status stopped moving Unknown (with a `NodeNotReady` event and their pods'
//! Ready=False), keeps the NoSchedule condition taints in step with the conditions, queues
//! the nodes not ready for their NoExecute taint in their zone's rate-limited queue and
//! computes the zones' states (`handleDisruption`: the zone's rate, master disruption
//! mode). Every 100 ms (`NodeEvictionPeriod`) it taints the queued nodes as fast as each
//! zone's rate allows (`doNoExecuteTaintingPass`), and every second it deletes the pods
//! that NoExecute taints evict, now or when their toleration runs out
//! (`TaintManagerEviction`), after setting their `DisruptionTarget` condition. The
//! decisions are [`crate::nodelifecycle`]'s; what is held here (when each node was last
//! seen alive, the zones' queues, the deletions scheduled) is bounded by the nodes and pods
//! in the caches and rebuilt from scratch by a new leader.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bosun_api_client::{ApiClient, Patch};
use bosun_runtime::events::{Recorder, object_ref};
use bosun_runtime::reflector::Store;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::nodelifecycle::{
    self, Disruption, Eviction, EvictionRates, NoExecuteTainter, NodeHealth, Scheduled,
    TAINT_NOT_READY, TAINT_UNREACHABLE, TaintAction, desired_taints, disruption_target,
    excluded_from_disruption, grace_period, observe, pod_eviction, stale_conditions,
    swap_no_execute_taints, zone_key,
};

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// How often pending evictions are looked at.
const EVICTION_TICK: Duration = Duration::from_secs(1);
/// How often the zones' tainting queues are tried (`scheduler.NodeEvictionPeriod`).
const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);
/// When a queued node cannot be looked at yet, it is retried after this long.
const TAINT_RETRY: Duration = Duration::from_millis(50);

/// The controller's timings and rates (kube-controller-manager's flags).
#[derive(Debug, Clone, Copy)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`.
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub monitor_grace: Duration,
    /// `--node-startup-grace-period`.
    pub startup_grace: Duration,
    /// `--node-eviction-rate`, `--secondary-node-eviction-rate`,
    /// `--large-cluster-size-threshold`, `--unhealthy-zone-threshold`.
    pub rates: EvictionRates,
}

type ZoneLabel = Vec<(String, String)>;

/// The node lifecycle controller's metrics, as Kubernetes names them (`node_collector_*`).
#[derive(Debug, Clone, Default)]
pub struct NodeLifecycleMetrics {
    zone_health: Family<ZoneLabel, Gauge<f64, AtomicU64>>,
    zone_size: Family<ZoneLabel, Gauge<f64, AtomicU64>>,
    unhealthy_nodes: Family<ZoneLabel, Gauge<f64, AtomicU64>>,
    evictions: Family<ZoneLabel, Counter>,
}

impl NodeLifecycleMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = NodeLifecycleMetrics::default();
        registry.register(
            "node_collector_zone_health",
            "Gauge measuring percentage of healthy nodes per zone.",
            m.zone_health.clone(),
        );
        registry.register(
            "node_collector_zone_size",
            "Gauge measuring number of registered Nodes per zones.",
            m.zone_size.clone(),
        );
        registry.register(
            "node_collector_unhealthy_nodes_in_zone",
            "Gauge measuring number of not Ready Nodes per zones.",
            m.unhealthy_nodes.clone(),
        );
        registry.register(
            "node_collector_evictions",
            "Number of Node evictions that happened since current instance of NodeController started.",
            m.evictions.clone(),
        );
        m
    }

    fn zone(zone: &str) -> ZoneLabel {
        vec![("zone".to_string(), zone.to_string())]
    }
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
    /// The nodes seen (`knownNodeSet`), with their reference for the `RemovingNode` event.
    known: Mutex<HashMap<String, ObjectReference>>,
    tainter: Mutex<NoExecuteTainter>,
    metrics: NodeLifecycleMetrics,
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
        metrics: NodeLifecycleMetrics,
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
            known: Mutex::new(HashMap::new()),
            tainter: Mutex::new(NoExecuteTainter::new(cfg.rates)),
            metrics,
        }
    }

    /// Runs the passes until `stop` flips.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        #[derive(Clone, Copy)]
        enum Pass {
            Monitor,
            Taint,
            Evict,
        }
        let mut monitor = tokio::time::interval(self.cfg.monitor_period);
        let mut taint = tokio::time::interval(NODE_EVICTION_PERIOD);
        let mut evict = tokio::time::interval(EVICTION_TICK);
        for t in [&mut monitor, &mut taint, &mut evict] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let pass = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                _ = monitor.tick() => Pass::Monitor,
                _ = taint.tick() => Pass::Taint,
                _ = evict.tick() => Pass::Evict,
            };
            match pass {
                Pass::Monitor => self.monitor_node_health().await,
                Pass::Taint => self.no_execute_tainting_pass().await,
                Pass::Evict => self.taint_eviction_pass().await,
            }
        }
    }

    /// `monitorNodeHealth`: one pass over every node, then the zones' states.
    pub async fn monitor_node_health(&self) {
        let nodes = self.nodes.list();
        {
            let mut health = self.health.lock();
            health.retain(|name, _| self.nodes.get("", name).is_some());
        }
        // New nodes: their zone is known, and they start without NoExecute taints.
        let (added, deleted): (Vec<&Node>, Vec<(String, ObjectReference)>) = {
            let mut known = self.known.lock();
            let deleted = known
                .extract_if(|name, _| self.nodes.get("", name).is_none())
                .collect();
            let added = nodes
                .iter()
                .map(|n| &**n)
                .filter(|n| {
                    let Some(name) = &n.metadata.name else {
                        return false;
                    };
                    if known.contains_key(name) {
                        return false;
                    }
                    known.insert(name.clone(), object_ref(*n));
                    true
                })
                .collect();
            (added, deleted)
        };
        for (name, reference) in deleted {
            debug!(node = %name, "Controller observed a Node deletion");
            self.node_recorder.normal(
                &reference,
                "RemovingNode",
                format!("Removing Node {name} from Controller"),
            );
        }
        for node in added {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            debug!(node = %name, "Controller observed a new Node");
            self.node_recorder.normal(
                &object_ref(node),
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            );
            self.tainter
                .lock()
                .add_zone(&zone_key(node), Instant::now());
            if let Err(e) = self.mark_node_as_reachable(node).await {
                warn!(node = ?node.metadata.name, error = %e, "Failed to remove taints from node");
            }
        }
        let mut zones: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for node in &nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            match self.monitor_one(&name, node).await {
                Ok(current_ready) => {
                    if !excluded_from_disruption(node) {
                        zones.entry(zone_key(node)).or_default().push(current_ready);
                    }
                }
                Err(e) => warn!(
                    node = %name,
                    error = %e,
                    "Update health of Node from Controller error, Skipping - no pods will be evicted"
                ),
            }
        }
        self.handle_disruption(&zones, &nodes).await;
    }

    /// `handleDisruption`: the zones' states, rates and metrics; master disruption mode.
    async fn handle_disruption(
        &self,
        zones: &BTreeMap<String, Vec<Option<String>>>,
        nodes: &[std::sync::Arc<Node>],
    ) {
        let zones_ready: BTreeMap<String, Vec<Option<&str>>> = zones
            .iter()
            .map(|(z, v)| (z.clone(), v.iter().map(Option::as_deref).collect()))
            .collect();
        let (outcome, views, gone) = {
            let mut tainter = self.tainter.lock();
            let before = tainter.zones();
            let (outcome, views) = tainter.handle_disruption(&zones_ready, Instant::now());
            let gone: Vec<String> = before
                .into_iter()
                .filter(|z| !views.contains_key(z))
                .collect();
            (outcome, views, gone)
        };
        for zone in gone {
            let label = NodeLifecycleMetrics::zone(&zone);
            self.metrics.zone_size.get_or_create(&label).set(0.0);
            self.metrics.unhealthy_nodes.get_or_create(&label).set(0.0);
            self.metrics.zone_health.get_or_create(&label).set(100.0);
        }
        for (zone, view) in &views {
            let label = NodeLifecycleMetrics::zone(zone);
            #[allow(clippy::cast_precision_loss)]
            {
                self.metrics
                    .zone_size
                    .get_or_create(&label)
                    .set(view.size as f64);
                self.metrics
                    .unhealthy_nodes
                    .get_or_create(&label)
                    .set(view.unhealthy as f64);
            }
            self.metrics
                .zone_health
                .get_or_create(&label)
                .set(view.health());
            let _ = self.metrics.evictions.get_or_create(&label);
        }
        match outcome {
            Disruption::Entered => {
                info!(
                    "Controller detected that all Nodes are not-Ready. Entering master disruption mode"
                );
                for node in nodes {
                    if let Err(e) = self.mark_node_as_reachable(node).await {
                        error!(node = ?node.metadata.name, error = %e, "Failed to remove taints from Node");
                    }
                }
            }
            Disruption::Exited => {
                info!(
                    "Controller detected that some Nodes are Ready. Exiting master disruption mode"
                );
                // Every node gets a new grace period from now.
                let now = Timestamp::now();
                for h in self.health.lock().values_mut() {
                    h.probe = now;
                }
            }
            Disruption::Zones(changed) => {
                for (zone, state) in changed {
                    info!(%zone, new_state = state.as_str(), "Controller detected that zone is now in new state");
                }
            }
        }
    }

    /// `markNodeAsReachable`: the node's NoExecute not-ready and unreachable taints go, and
    /// it leaves its zone's queue.
    async fn mark_node_as_reachable(&self, node: &Node) -> anyhow::Result<bool> {
        let name = node.metadata.name.as_deref().unwrap_or("");
        // The latest version: this pass may have written the node since it was listed.
        let latest = self.nodes.get("", name);
        let node = latest.as_deref().unwrap_or(node);
        if let Some(taints) = swap_no_execute_taints(
            node,
            None,
            &[TAINT_UNREACHABLE, TAINT_NOT_READY],
            Timestamp::now(),
        ) {
            self.write_taints(name, taints).await?;
        }
        Ok(self.tainter.lock().forget(&zone_key(node), name))
    }

    /// Writes the node's taints (on the latest version of the node from the cache).
    async fn write_taints(
        &self,
        name: &str,
        taints: Vec<k8s_openapi::api::core::v1::Taint>,
    ) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get("", name) else {
            return Ok(());
        };
        let mut node = Node::clone(&node);
        node.spec.get_or_insert_with(Default::default).taints =
            (!taints.is_empty()).then_some(taints);
        self.client.update("", &node).await?;
        Ok(())
    }

    /// `doNoExecuteTaintingPass`: taints the zones' due nodes, as fast as their rates allow.
    pub async fn no_execute_tainting_pass(&self) {
        let now = Timestamp::now();
        let mut writes = Vec::new();
        self.tainter
            .lock()
            .tainting_pass(Instant::now(), |zone, value| {
                let Some(node) = self.nodes.get("", &value.value) else {
                    debug!(node = %value.value, "Node no longer present in nodeLister");
                    return Ok(());
                };
                let Some(ready) = nodelifecycle::ready_status(&node) else {
                    return Err(TAINT_RETRY);
                };
                let (add, opposite) = match ready {
                    "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
                    "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
                    _ => {
                        debug!(node = %value.value, "Node was in a taint queue, but it's ready now. Ignoring taint request");
                        return Ok(());
                    }
                };
                writes.push((
                    zone.to_string(),
                    value.value.clone(),
                    swap_no_execute_taints(&node, Some(add), &[opposite], now),
                ));
                Ok(())
            });
        for (zone, name, taints) in writes {
            let result = match taints {
                Some(t) => self.write_taints(&name, t).await,
                None => Ok(()),
            };
            match result {
                Ok(()) => {
                    info!(node = %name, "NoExecute taint added");
                    self.metrics
                        .evictions
                        .get_or_create(&NodeLifecycleMetrics::zone(&zone))
                        .inc();
                }
                // The next monitor pass queues it again.
                Err(e) => warn!(node = %name, error = %e, "taint node NoExecute"),
            }
        }
    }

    /// One node's health; its Ready status after the update (`currentReadyCondition`).
    async fn monitor_one(&self, name: &str, node: &Node) -> anyhow::Result<Option<String>> {
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
        let current_ready = nodelifecycle::ready_status(&current).map(str::to_string);
        if current_ready.is_some() {
            let observed = observed_ready.as_deref().unwrap_or("Unknown");
            let action = self
                .tainter
                .lock()
                .process_node(node, observed, Instant::now());
            match action {
                TaintAction::Nothing => {}
                TaintAction::Swap(add, remove) => {
                    if let Some(taints) =
                        swap_no_execute_taints(&current, Some(add), &[remove], now)
                    {
                        current.spec.get_or_insert_with(Default::default).taints =
                            (!taints.is_empty()).then_some(taints);
                        current = self.client.update("", &current).await?;
                    }
                }
                TaintAction::MarkReachable => {
                    if let Some(taints) = swap_no_execute_taints(
                        &current,
                        None,
                        &[TAINT_UNREACHABLE, TAINT_NOT_READY],
                        now,
                    ) {
                        debug!(node = %name, "Node is healthy again, removing NoExecute taints");
                        current.spec.get_or_insert_with(Default::default).taints =
                            (!taints.is_empty()).then_some(taints);
                        current = self.client.update("", &current).await?;
                    }
                }
            }
        }
        if let Some(taints) = desired_taints(&current) {
            debug!(node = %name, ?taints, "node taints");
            current.spec.get_or_insert_with(Default::default).taints =
                (!taints.is_empty()).then_some(taints);
            self.client.update("", &current).await?;
        }
        Ok(current_ready)
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
            // `addConditionAndDeletePod`: DisruptionTarget=True first, through the status.
            let status = self.pods.get(&ns, &name).and_then(|p| p.status.clone());
            if let Some(condition) = disruption_target(status.as_ref(), Timestamp::now()) {
                let patch = serde_json::json!({
                    "metadata": {"uid": uid},
                    "status": {"conditions": [condition]},
                });
                match self
                    .client
                    .patch_status::<Pod>(&ns, &name, &Patch::Strategic(patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_conflict() => continue,
                    Err(e) => {
                        // The next pass tries again.
                        warn!(pod = %format!("{ns}/{name}"), error = %e, "set DisruptionTarget");
                        continue;
                    }
                }
            }
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
