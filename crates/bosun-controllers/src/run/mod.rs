//! `bosun controller-manager`: the loops around the decision cores.
//!
//! As kube-controller-manager: shared informers (one reflector per kind: Deployments,
//! ReplicaSets, Pods, Namespaces, Leases, Nodes, plus the garbage collector's metadata
//! reflectors of every other kind of the resource table) whose events the controllers' handlers ([`handlers`]) turn into keys
//! on their work queues; workers that sync one key at a time (the queue never hands a key to
//! two workers at once) by reading the caches, asking the core for a plan and applying it
//! through the apiserver; all of it only while this process holds the controller-manager's
//! Lease (`--leader-elect`), so that several replicas can run and only one acts.
//!
//! A sync is level-triggered: it reads the current state from the caches, whatever event
//! woke it, and a failed write requeues the key with back-off. Nothing here holds state that
//! a watch cannot rebuild, except the replicaset controller's expectations, which only hold
//! a controller back (for at most five minutes) until its cache has seen its own writes.

mod deployment;
mod garbagecollector;
pub mod handlers;
mod namespace;
mod nodelifecycle;
mod replicaset;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bosun_api_client::{ApiClient, Patch};
use bosun_runtime::controller::{Action as Next, run_workers};
use bosun_runtime::events::Recorder;
use bosun_runtime::leader::{LeaderElectionFlags, LeaderError, run_leader_served};
use bosun_runtime::queue::{QueueMetrics, WorkQueue};
use bosun_runtime::reflector::{self, Event, Store};
use bosun_runtime::server::{self, Health, Served};
use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::serde::de::DeserializeOwned;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::podutil::{self, Claim};
use handlers::Lookup;

pub use deployment::DeploymentController;
pub use garbagecollector::{
    Caches as GcCaches, GarbageCollector, MetaCache, PartialObjectMetadata,
};
pub use namespace::NamespaceController;
pub use nodelifecycle::{NodeLifecycleConfig, NodeLifecycleController, NodeLifecycleMetrics};
pub use replicaset::ReplicaSetController;

/// The field manager and event source of this component's writes.
pub const COMPONENT: &str = "bosun-controller-manager";

/// `bosun controller-manager` options (kube-controller-manager's names).
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerManagerConfig {
    /// The apiserver's URL (the one kubectl uses; its gRPC API shares the port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub apiserver: String,
    /// Leader election (`--leader-elect*`; the Lease is `kube-system/kube-controller-manager` by default).
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Deployments synced at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_deployment_syncs: u16,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_replicaset_syncs: u16,
    /// Namespaces emptied at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_namespace_syncs: u16,
    /// Objects the garbage collector handles at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrent_gc_syncs: u16,
    /// The period for syncing NodeStatus in the node lifecycle controller.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// Amount of time a running Node may be unresponsive (its Lease and status not
    /// renewed) before it is marked unhealthy (Ready=Unknown, tainted unreachable).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Amount of time a starting Node may be unresponsive before it is marked unhealthy.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub node_startup_grace_period: Duration,
    /// Number of nodes per second on which pods are deleted in case of node failure when a
    /// zone is healthy (see --unhealthy-zone-threshold for definition of healthy/unhealthy).
    /// Zone refers to entire cluster in non-multizone clusters.
    #[arg(long, default_value_t = 0.1, value_parser = non_negative)]
    pub node_eviction_rate: f32,
    /// Number of nodes per second on which pods are deleted in case of node failure when a
    /// zone is unhealthy (see --unhealthy-zone-threshold for definition of
    /// healthy/unhealthy). Zone refers to entire cluster in non-multizone clusters. This
    /// value is implicitly overridden to 0 if the cluster size is smaller than
    /// --large-cluster-size-threshold.
    #[arg(long, default_value_t = 0.01, value_parser = non_negative)]
    pub secondary_node_eviction_rate: f32,
    /// Number of nodes from which node-lifecycle-controller treats the cluster as large for
    /// the eviction logic purposes. --secondary-node-eviction-rate is implicitly overridden
    /// to 0 for clusters this size or smaller. Notice: If nodes reside in multiple zones,
    /// this threshold will be considered as zone node size threshold for each zone to
    /// determine node eviction rate independently.
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: u32,
    /// Fraction of Nodes in a zone which needs to be not Ready (minimum 3) for zone to be
    /// treated as unhealthy.
    #[arg(long, default_value_t = 0.55, value_parser = non_negative)]
    pub unhealthy_zone_threshold: f32,
    /// Controllers to run: `*` runs those on by default, `name` enables one, `-name`
    /// disables one. Known: deployment, replicaset, garbagecollector, namespace,
    /// nodelifecycle (also as deployment-controller, replicaset-controller,
    /// garbage-collector-controller, namespace-controller, node-lifecycle-controller).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Address to serve /metrics and /healthz on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Port to serve /metrics and /healthz on; 0 serves nothing.
    #[arg(long, default_value_t = 10257)]
    pub port: u16,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        ControllerManagerConfig {
            apiserver: "http://127.0.0.1:8080".into(),
            leader_election: LeaderElectionFlags::default(),
            concurrent_deployment_syncs: 5,
            concurrent_replicaset_syncs: 5,
            concurrent_gc_syncs: 20,
            concurrent_namespace_syncs: 10,
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
            controllers: vec!["*".into()],
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: 10257,
        }
    }
}

pub use bosun_api::parse_duration;

/// A flag's non-negative (finite) number.
fn non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("{s} must be a non-negative number")),
        Err(e) => Err(format!("invalid number {s:?}: {e}")),
    }
}

/// Which controllers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    /// The deployment controller.
    pub deployment: bool,
    /// The replicaset controller.
    pub replicaset: bool,
    /// The garbage collector.
    pub garbagecollector: bool,
    /// The namespace controller.
    pub namespace: bool,
    /// The node lifecycle controller (with taint eviction).
    pub nodelifecycle: bool,
}

const KNOWN: [(&str, &str); 5] = [
    ("deployment", "deployment-controller"),
    ("replicaset", "replicaset-controller"),
    ("garbagecollector", "garbage-collector-controller"),
    ("namespace", "namespace-controller"),
    ("nodelifecycle", "node-lifecycle-controller"),
];

impl Enabled {
    /// `IsControllerEnabled` over `--controllers`: the first entry naming a controller
    /// decides; otherwise `*` enables it (both are on by default).
    pub fn from_flags(flags: &[String]) -> Result<Enabled, String> {
        for f in flags {
            let name = f.strip_prefix('-').unwrap_or(f);
            if name != "*" && !KNOWN.iter().any(|(a, b)| name == *a || name == *b) {
                return Err(format!(
                    "{name:?} is not in the list of known controllers (deployment, replicaset, garbagecollector, namespace, nodelifecycle)"
                ));
            }
        }
        let on = |(short, long): (&str, &str)| {
            for f in flags {
                if f == short || f == long {
                    return true;
                }
                if f.strip_prefix('-').is_some_and(|n| n == short || n == long) {
                    return false;
                }
            }
            flags.iter().any(|f| f == "*")
        };
        Ok(Enabled {
            deployment: on(KNOWN[0]),
            replicaset: on(KNOWN[1]),
            garbagecollector: on(KNOWN[2]),
            namespace: on(KNOWN[3]),
            nodelifecycle: on(KNOWN[4]),
        })
    }
}

/// The controllers' sync counts and durations.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// client-go's workqueue metrics of the controllers' queues.
    pub queue: QueueMetrics,
    /// The node lifecycle controller's `node_collector_*`.
    pub node_lifecycle: NodeLifecycleMetrics,
    syncs: Family<Vec<(String, String)>, Counter>,
    duration: Family<Vec<(String, String)>, Histogram>,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            queue: QueueMetrics::register(registry),
            node_lifecycle: NodeLifecycleMetrics::register(registry),
            syncs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        registry.register(
            "bosun_controller_syncs",
            "Syncs done per controller and result (ok, error)",
            m.syncs.clone(),
        );
        registry.register(
            "bosun_controller_sync_duration_seconds",
            "How long one sync took, per controller",
            m.duration.clone(),
        );
        m
    }

    fn record(&self, controller: &str, ok: bool, started: Instant) {
        let result = if ok { "ok" } else { "error" };
        self.syncs
            .get_or_create(&vec![
                ("controller".into(), controller.into()),
                ("result".into(), result.into()),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("controller".into(), controller.into())])
            .observe(started.elapsed().as_secs_f64());
    }
}

impl<K> Lookup<K> for Store<K> {
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        Store::get(self, namespace, name)
    }

    fn list(&self) -> Vec<Arc<K>> {
        Store::list(self)
    }
}

/// `ClaimObject` over a list of decisions ([`crate::podutil::claim`]): the objects `owner`
/// owns, adopting matching orphans and releasing its own that stopped matching, through
/// strategic merge patches. Adoption first re-reads the owner from the apiserver, once
/// (`RecheckDeletionTimestamp`: the cache may be behind a deletion). `api_version` and
/// `kind` are the owner's, for the controller reference.
pub(crate) async fn claim_objects<O, K>(
    client: &ApiClient,
    owner: &ObjectMeta,
    (api_version, kind): (&str, &str),
    claims: Vec<(&K, Claim)>,
) -> anyhow::Result<Vec<K>>
where
    O: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Clone,
{
    let ns = owner.namespace.as_deref().unwrap_or("");
    let owner_uid = owner.uid.clone().unwrap_or_default();
    let mut owned = Vec::new();
    let mut errors = Vec::new();
    let mut can_adopt: Option<Result<(), String>> = None;
    for (obj, claim) in claims {
        let name = obj.metadata().name.as_deref().unwrap_or("");
        let uid = obj.metadata().uid.as_deref().unwrap_or("");
        let what = format!("{} {ns}/{name}", K::KIND);
        let patch = match claim {
            Claim::Owned => {
                owned.push(obj.clone());
                continue;
            }
            Claim::Ignore => continue,
            Claim::Adopt => {
                if can_adopt.is_none() {
                    can_adopt = Some(recheck::<O>(client, owner).await);
                }
                if let Some(Err(e)) = &can_adopt {
                    errors.push(format!("cannot adopt {what}: {e}"));
                    continue;
                }
                let r = podutil::new_controller_ref(api_version, kind, owner);
                podutil::adopt_patch(&r, uid)
            }
            Claim::Release => podutil::release_patch(&owner_uid, uid),
        };
        match client.patch::<K>(ns, name, &Patch::Strategic(patch)).await {
            Ok(patched) => {
                if claim == Claim::Adopt {
                    owned.push(patched);
                }
            }
            // Gone, or (release) replaced by a namesake whose uid fails the patch.
            Err(e) if e.is_not_found() || (claim == Claim::Release && e.code == 422) => {}
            Err(e) => errors.push(format!("{claim:?} {what}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!(errors.join("; "));
    }
    Ok(owned)
}

/// `RecheckDeletionTimestamp`: the owner, read from the apiserver, is the one cached (same
/// uid) and is not being deleted.
async fn recheck<O>(client: &ApiClient, owner: &ObjectMeta) -> Result<(), String>
where
    O: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned,
{
    let ns = owner.namespace.as_deref().unwrap_or("");
    let name = owner.name.as_deref().unwrap_or("");
    let fresh = client.get::<O>(ns, name).await.map_err(|e| e.to_string())?;
    let fresh = fresh.metadata();
    if fresh.uid != owner.uid {
        return Err(format!(
            "original {} {ns}/{name} is gone: got uid {}, wanted {}",
            O::KIND,
            fresh.uid.as_deref().unwrap_or(""),
            owner.uid.as_deref().unwrap_or("")
        ));
    }
    if let Some(t) = &fresh.deletion_timestamp {
        return Err(format!("{ns}/{name} has just been deleted at {}", t.0));
    }
    Ok(())
}

/// `namespace/name` split; a key without a slash is a cluster-scoped name.
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// This host's name, for the leader's identity and events' source.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs the controller-manager until `shutdown` flips (or, with leader election, until it
/// loses the Lease: an error, upon which the process exits as kube-controller-manager does).
pub async fn run(
    cfg: ControllerManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let enabled = Enabled::from_flags(&cfg.controllers).map_err(anyhow::Error::msg)?;
    let client = ApiClient::connect(&cfg.apiserver)
        .await
        .context("connect to the apiserver")?
        .with_field_manager(COMPONENT);
    let health = Health::new();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let served = Served {
        registry: Arc::new(RwLock::new(registry)),
        health: health.clone(),
    };
    let mut server = (cfg.port != 0).then(|| {
        let addr = SocketAddr::new(cfg.bind_address, cfg.port);
        tokio::spawn(server::serve(
            addr,
            server::router(served.clone()),
            shutdown.clone(),
        ))
    });
    info!(
        apiserver = %cfg.apiserver,
        deployment = enabled.deployment,
        replicaset = enabled.replicaset,
        garbagecollector = enabled.garbagecollector,
        namespace = enabled.namespace,
        nodelifecycle = enabled.nodelifecycle,
        leader_elect = cfg.leader_election.leader_elect,
        "starting controller-manager"
    );
    let host = hostname();
    let main = async {
        if let Some(le) = cfg.leader_election.config("kube-controller-manager") {
            let (client, cfg, metrics, health, host) = (
                client.clone(),
                cfg.clone(),
                metrics.clone(),
                health.clone(),
                host.clone(),
            );
            run_leader_served(
                client.clone(),
                le,
                Some(&served),
                shutdown.clone(),
                move |stop| run_controllers(client, cfg, enabled, metrics, health, host, stop),
            )
            .await
            .map_err(|e| match e {
                LeaderError::Lead(e) => e,
                lost @ LeaderError::LostLeadership => anyhow::Error::new(lost),
            })
        } else {
            run_controllers(
                client.clone(),
                cfg.clone(),
                enabled,
                metrics.clone(),
                health.clone(),
                host.clone(),
                shutdown.clone(),
            )
            .await
        }
    };
    let mut server_done = false;
    let result = match server.as_mut() {
        Some(handle) => {
            tokio::pin!(main);
            tokio::select! {
                r = &mut main => r,
                r = &mut *handle => {
                    server_done = true;
                    match r {
                        // Stopped by the shutdown signal: let the controllers finish too.
                        Ok(Ok(())) => main.await,
                        // It could not start (its port is taken, say).
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(anyhow::anyhow!("component server: {e}")),
                    }
                }
            }
        }
        None => main.await,
    };
    if let Some(handle) = server
        && !server_done
    {
        handle.abort();
        let _ = handle.await;
    }
    info!("controller-manager stopped");
    result
}

/// A controller as its workers see it: a queue of keys and the sync of one key.
pub(crate) trait Reconciler: Send + Sync + 'static {
    /// What the queue holds.
    type Key: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static;
    /// The controller's name in metrics and logs.
    const NAME: &'static str;
    /// The controller's work queue.
    fn queue(&self) -> &WorkQueue<Self::Key>;
    /// The metrics its syncs count in.
    fn metrics(&self) -> &Metrics;
    /// One sync of `key`, level-triggered.
    fn reconcile(&self, key: Self::Key) -> impl Future<Output = anyhow::Result<Next>> + Send;
}

/// Runs `workers` workers of `r` until `stop` flips, counting and timing each sync.
async fn run_reconciler<R: Reconciler>(r: Arc<R>, workers: usize, stop: watch::Receiver<bool>) {
    let queue = r.queue().clone();
    let reconcile = move |key: R::Key| {
        let r = r.clone();
        async move {
            let started = Instant::now();
            let result = r.reconcile(key.clone()).await;
            r.metrics().record(R::NAME, result.is_ok(), started);
            debug!(controller = R::NAME, ?key, elapsed = ?started.elapsed(), ok = result.is_ok(), "synced");
            result
        }
    };
    run_workers(queue, workers, reconcile, stop).await;
}

/// A controller's handler of one kind's events.
type Handler<K> = Box<dyn Fn(&Event<K>) + Send + Sync>;

/// Hands every event of an informer to each handler, in order, until the informer ends.
fn dispatch<K: Send + Sync + 'static>(
    mut events: mpsc::Receiver<Event<K>>,
    handlers: Vec<Handler<K>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            for h in &handlers {
                h(&ev);
            }
        }
    })
}

/// Runs the enabled controllers until `stop` flips: informers, handlers, workers.
async fn run_controllers(
    client: ApiClient,
    cfg: ControllerManagerConfig,
    enabled: Enabled,
    metrics: Metrics,
    health: Arc<Health>,
    host: String,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if !enabled.deployment
        && !enabled.replicaset
        && !enabled.garbagecollector
        && !enabled.namespace
        && !enabled.nodelifecycle
    {
        warn!("no controller enabled");
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        return Ok(());
    }
    let config = reflector::Config::default;
    let (deployments, d_events, d_task) =
        reflector::reflector::<Deployment>(client.clone(), None, config(), stop.clone());
    let (replica_sets, rs_events, rs_task) =
        reflector::reflector::<ReplicaSet>(client.clone(), None, config(), stop.clone());
    let (pods, pod_events, pod_task) =
        reflector::reflector::<Pod>(client.clone(), None, config(), stop.clone());
    let (namespaces, ns_events, ns_task) =
        reflector::reflector::<Namespace>(client.clone(), None, config(), stop.clone());
    let (leases, lease_events, lease_task) =
        reflector::reflector::<Lease>(client.clone(), None, config(), stop.clone());
    let (nodes, node_events, node_task) =
        reflector::reflector::<Node>(client.clone(), None, config(), stop.clone());

    let mut recorder_tasks = Vec::new();
    let dc = if enabled.deployment {
        let (recorder, task) = Recorder::new(client.clone(), "deployment-controller", &host);
        recorder_tasks.push(task);
        Some(Arc::new(DeploymentController::new(
            client.clone(),
            deployments.clone(),
            replica_sets.clone(),
            pods.clone(),
            recorder,
            metrics.clone(),
        )))
    } else {
        None
    };
    let rc = if enabled.replicaset {
        let (recorder, task) = Recorder::new(client.clone(), "replicaset-controller", &host);
        recorder_tasks.push(task);
        Some(Arc::new(ReplicaSetController::new(
            client.clone(),
            replica_sets.clone(),
            pods.clone(),
            recorder,
            metrics.clone(),
        )))
    } else {
        None
    };
    let mut gc_metadata = Vec::new();
    let gc = if enabled.garbagecollector {
        let (recorder, task) = Recorder::new(client.clone(), "garbage-collector-controller", &host);
        recorder_tasks.push(task);
        // The shared caches, then a metadata reflector for every other kind of the table.
        let mut caches = GcCaches::default();
        caches.insert("deployments", Arc::new(deployments.clone()));
        caches.insert("replicasets", Arc::new(replica_sets.clone()));
        caches.insert("pods", Arc::new(pods.clone()));
        caches.insert("namespaces", Arc::new(namespaces.clone()));
        caches.insert("leases", Arc::new(leases.clone()));
        caches.insert("nodes", Arc::new(nodes.clone()));
        for res in caches.missing() {
            let (store, events, task) = reflector::reflector_for::<PartialObjectMetadata>(
                client.clone(),
                res.plural,
                res.kind,
                None,
                config(),
                stop.clone(),
            );
            caches.insert(res.plural, Arc::new(store));
            gc_metadata.push((res.plural, events, task));
        }
        Some(Arc::new(GarbageCollector::new(
            client.clone(),
            caches,
            recorder,
            metrics.clone(),
        )))
    } else {
        None
    };

    let nc = enabled.namespace.then(|| {
        Arc::new(NamespaceController::new(
            client.clone(),
            namespaces.clone(),
            metrics.clone(),
        ))
    });

    let nlc = enabled.nodelifecycle.then(|| {
        let (node_recorder, t1) = Recorder::new(client.clone(), "node-controller", &host);
        let (eviction_recorder, t2) =
            Recorder::new(client.clone(), "taint-eviction-controller", &host);
        recorder_tasks.extend([t1, t2]);
        Arc::new(NodeLifecycleController::new(
            client.clone(),
            (nodes.clone(), leases.clone(), pods.clone()),
            NodeLifecycleConfig {
                monitor_period: cfg.node_monitor_period,
                monitor_grace: cfg.node_monitor_grace_period,
                startup_grace: cfg.node_startup_grace_period,
                rates: crate::nodelifecycle::EvictionRates {
                    eviction_qps: cfg.node_eviction_rate,
                    secondary_qps: cfg.secondary_node_eviction_rate,
                    large_cluster_threshold: cfg.large_cluster_size_threshold as usize,
                    unhealthy_zone_threshold: cfg.unhealthy_zone_threshold,
                },
            },
            node_recorder,
            eviction_recorder,
            metrics.node_lifecycle.clone(),
        ))
    });

    // The handlers: each informer's events to every controller that listens to the kind.
    let mut on_deployment: Vec<Handler<Deployment>> = Vec::new();
    let mut on_replica_set: Vec<Handler<ReplicaSet>> = Vec::new();
    let mut on_pod: Vec<Handler<Pod>> = Vec::new();
    let mut on_namespace: Vec<Handler<Namespace>> = Vec::new();
    let mut on_lease: Vec<Handler<Lease>> = Vec::new();
    let mut on_node: Vec<Handler<Node>> = Vec::new();
    if let Some(nc) = &nc {
        let n = nc.clone();
        on_namespace.push(Box::new(move |ev| n.on_namespace(ev)));
        let (a, b, c, d) = (nc.clone(), nc.clone(), nc.clone(), nc.clone());
        on_deployment.push(Box::new(move |ev| a.on_content(ev)));
        on_replica_set.push(Box::new(move |ev| b.on_content(ev)));
        on_pod.push(Box::new(move |ev| c.on_content(ev)));
        on_lease.push(Box::new(move |ev| d.on_content(ev)));
    }
    if let Some(dc) = &dc {
        let (a, b, c) = (dc.clone(), dc.clone(), dc.clone());
        on_deployment.push(Box::new(move |ev| a.on_deployment(ev)));
        on_replica_set.push(Box::new(move |ev| b.on_replica_set(ev)));
        on_pod.push(Box::new(move |ev| c.on_pod(ev)));
    }
    if let Some(rc) = &rc {
        let (b, c) = (rc.clone(), rc.clone());
        on_replica_set.push(Box::new(move |ev| b.on_replica_set(ev)));
        on_pod.push(Box::new(move |ev| c.on_pod(ev)));
    }
    let mut gc_tasks = Vec::new();
    let mut dispatchers = Vec::new();
    if let Some(gc) = &gc {
        let (a, b, c) = (gc.clone(), gc.clone(), gc.clone());
        on_deployment.push(Box::new(move |ev| a.handle("deployments", ev)));
        on_replica_set.push(Box::new(move |ev| b.handle("replicasets", ev)));
        on_pod.push(Box::new(move |ev| c.handle("pods", ev)));
        let (d, e, f) = (gc.clone(), gc.clone(), gc.clone());
        on_lease.push(Box::new(move |ev| d.handle("leases", ev)));
        on_node.push(Box::new(move |ev| e.handle("nodes", ev)));
        on_namespace.push(Box::new(move |ev| f.handle("namespaces", ev)));
        for (resource, events, task) in gc_metadata {
            let g = gc.clone();
            let h: Handler<PartialObjectMetadata> = Box::new(move |ev| g.handle(resource, ev));
            dispatchers.push(dispatch(events, vec![h]));
            gc_tasks.push(task);
        }
    }
    dispatchers.extend([
        dispatch(d_events, on_deployment),
        dispatch(rs_events, on_replica_set),
        dispatch(pod_events, on_pod),
        dispatch(ns_events, on_namespace),
        dispatch(lease_events, on_lease),
        dispatch(node_events, on_node),
    ]);

    // WaitForNamedCacheSync: no worker acts on a partial cache.
    let synced = async {
        deployments.wait_synced().await;
        replica_sets.wait_synced().await;
        pods.wait_synced().await;
        namespaces.wait_synced().await;
        leases.wait_synced().await;
        nodes.wait_synced().await;
    };
    let mut stop_wait = stop.clone();
    let stopped_early = tokio::select! {
        () = synced => false,
        _ = stop_wait.wait_for(|s| *s) => true,
    };
    if !stopped_early {
        info!(
            deployments = deployments.len(),
            replica_sets = replica_sets.len(),
            pods = pods.len(),
            "caches synced; starting workers"
        );
        health.set_ready(true);
        let mut workers = Vec::new();
        if let Some(dc) = &dc {
            let n = usize::from(cfg.concurrent_deployment_syncs);
            workers.push(tokio::spawn(run_reconciler(dc.clone(), n, stop.clone())));
        }
        if let Some(rc) = &rc {
            let n = usize::from(cfg.concurrent_replicaset_syncs);
            workers.push(tokio::spawn(run_reconciler(rc.clone(), n, stop.clone())));
        }
        if let Some(gc) = &gc {
            let n = usize::from(cfg.concurrent_gc_syncs);
            let (gc, mut stop) = (gc.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                // Its own metadata caches and the graph first (`WaitForCacheSync`).
                let graph = async {
                    while !gc.graph_synced() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    () = graph => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                info!("garbage collector's graph synced; collecting");
                run_reconciler(gc, n, stop).await;
            }));
        }
        if let Some(nc) = &nc {
            let n = usize::from(cfg.concurrent_namespace_syncs);
            workers.push(tokio::spawn(run_reconciler(nc.clone(), n, stop.clone())));
        }
        if let Some(nlc) = &nlc {
            let (nlc, stop) = (nlc.clone(), stop.clone());
            workers.push(tokio::spawn(async move { nlc.run(stop).await }));
        }
        for w in workers {
            if let Err(e) = w.await {
                warn!(error = %e, "workers ended abnormally");
            }
        }
    }
    health.set_ready(false);
    // Stopping: the reflectors end on `stop`, which closes the handlers' channels.
    for t in [d_task, rs_task, pod_task] {
        let _ = t.await;
    }
    for t in [ns_task, lease_task, node_task] {
        let _ = t.await;
    }
    for t in gc_tasks {
        let _ = t.await;
    }
    for d in dispatchers {
        let _ = d.await;
    }
    if let Some(dc) = &dc {
        dc.queue().shut_down();
    }
    if let Some(rc) = &rc {
        rc.queue().shut_down();
    }
    if let Some(gc) = &gc {
        gc.queue().shut_down();
    }
    if let Some(nc) = &nc {
        nc.queue().shut_down();
    }
    // The recorders' writers end once every recorder is dropped; give them a moment to
    // flush what is queued.
    drop((dc, rc, gc, nlc));
    for t in recorder_tasks {
        if tokio::time::timeout(Duration::from_secs(2), t)
            .await
            .is_err()
        {
            warn!("events still queued at exit were dropped");
        }
    }
    if *stop.borrow() {
        Ok(())
    } else {
        bail!("controllers stopped before being asked to")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn controllers_flag_as_kube_controller_manager() {
        let on = |deployment, replicaset, garbagecollector, namespace, nodelifecycle| {
            Ok(Enabled {
                deployment,
                replicaset,
                garbagecollector,
                namespace,
                nodelifecycle,
            })
        };
        assert_eq!(
            Enabled::from_flags(&flags(&["*"])),
            on(true, true, true, true, true)
        );
        assert_eq!(
            Enabled::from_flags(&flags(&["*", "-deployment", "-namespace-controller"])),
            on(false, true, true, false, true)
        );
        assert_eq!(
            Enabled::from_flags(&flags(&["replicaset-controller", "garbagecollector"])),
            on(false, true, true, false, false)
        );
        assert_eq!(
            Enabled::from_flags(&flags(&["*", "-node-lifecycle-controller"])),
            on(true, true, true, true, false)
        );
        // The first entry naming a controller decides.
        assert_eq!(
            Enabled::from_flags(&flags(&["deployment", "-deployment"])),
            on(true, false, false, false, false)
        );
        assert!(
            Enabled::from_flags(&flags(&["*", "cloud-node"]))
                .is_err_and(|e| e.contains("\"cloud-node\" is not in the list"))
        );
    }

    #[test]
    fn durations_parse_as_go_flags() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        // Go's rule: a number needs a unit.
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(split_key("ns/web"), ("ns", "web"));
        assert_eq!(split_key("node-1"), ("", "node-1"));
    }
}
