//! `run()`: the kubelet of one node, or of `--node-count` hollow nodes in one process sharing
//! one apiserver connection and one pod watch: register the nodes, keep each node's Lease
//! and status, then sync the pods bound to them until shutdown.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bosun_api_client::{ApiClient, ApiError, Patch};
use bosun_runtime::controller::run_workers;
use bosun_runtime::events::Recorder;
use bosun_runtime::queue::{QueueConfig, QueueMetrics, WorkQueue};
use bosun_runtime::reflector::{self, Event};
use bosun_runtime::server::{self, Health, Served};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod};
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admission::Allocatable;
use crate::cidr::Ipv4Cidr;
use crate::config::{KubeletConfig, NodeSpec, RuntimeKind};
use crate::cri::{self, CriClient, CriRuntime, convert::NodeContext};
use crate::fake::FakeRuntime;
use crate::lease::{self, LeaseParams};
use crate::metrics::Metrics;
use crate::node::{self, NodeHealth, NodeParams};
use crate::pods::{NodePods, Pods, Work};
use crate::quantity::{parse_milli, parse_units};
use crate::runtime::Runtime;
use crate::server::{PodCache, ServerState};
use crate::status;

/// The field manager of the kubelet's writes.
pub const FIELD_MANAGER: &str = "bosun-kubelet";

/// Registrations in flight at once (a thousand hollow nodes register in a few seconds
/// without flooding the apiserver).
const REGISTER_CONCURRENCY: usize = 64;
/// How often the runtime is relisted for containers that died (the kubelet's PLEG period).
const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// Back-off between registration attempts: 100 ms doubling to 7 s.
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(100);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(7);
/// Deadline of a CRI call (the kubelet's `--runtime-request-timeout`, 2 min).
const CRI_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the kubelet until `shutdown` flips.
pub async fn run(cfg: KubeletConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    cfg.validate()?;
    let specs = cfg.nodes()?;
    match cfg.runtime {
        RuntimeKind::Fake => {
            let ip = cfg.node_ip.to_string();
            let delay = cfg.fake_stop_delay;
            let host = HostFacts::hollow(&cfg);
            run_nodes(
                &cfg,
                specs,
                host,
                move |cidr, _: &Recorder, _: &ApiClient| FakeRuntime::new(&ip, cidr, delay),
                shutdown,
            )
            .await
        }
        RuntimeKind::Cri => {
            let endpoint = cfg
                .container_runtime_endpoint
                .clone()
                .context("--container-runtime-endpoint")?;
            let client = CriClient::connect(&endpoint, cri::runtime::REQUEST_TIMEOUT)?;
            let version = CriRuntime::version_of(&client, &endpoint).await?;
            let host = HostFacts::from_host(&cfg);
            let ctx = node_context(&cfg, &specs[0].name, &host);
            run_nodes(
                &cfg,
                specs,
                host,
                move |_, recorder: &Recorder, api: &ApiClient| {
                    CriRuntime::new(
                        client.clone(),
                        version.clone(),
                        ctx.clone(),
                        recorder.clone(),
                        api.clone(),
                    )
                },
                shutdown,
            )
            .await
        }
    }
}

/// What a node reports of its host: capacity, allocatable, OS image.
#[derive(Debug, Clone)]
struct HostFacts {
    capacity: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
    os_image: String,
}

impl HostFacts {
    /// A hollow node: the --fake-* capacity, all of it allocatable.
    fn hollow(cfg: &KubeletConfig) -> Self {
        HostFacts {
            capacity: cfg.capacity(),
            allocatable: BTreeMap::new(),
            os_image: "Bosun hollow node".into(),
        }
    }

    /// The machine's CPUs, memory and --root-dir's disk.
    fn from_host(cfg: &KubeletConfig) -> Self {
        let (capacity, allocatable) =
            cri::host::host_capacity(&cfg.root_dir, cfg.max_pods, &cfg.eviction_hard);
        HostFacts {
            capacity,
            allocatable,
            os_image: cri::host::os_image(),
        }
    }

    /// What pods may use, for admission.
    fn admission(&self, cfg: &KubeletConfig) -> Allocatable {
        let m = if self.allocatable.is_empty() {
            &self.capacity
        } else {
            &self.allocatable
        };
        Allocatable {
            pods: i64::from(cfg.max_pods),
            cpu_milli: m.get("cpu").and_then(|q| parse_milli(q)).unwrap_or(0),
            memory: m.get("memory").and_then(|q| parse_units(q)).unwrap_or(0),
        }
    }
}

/// What the CRI conversion needs of the node.
fn node_context(cfg: &KubeletConfig, node: &str, host: &HostFacts) -> NodeContext {
    NodeContext {
        root_dir: cfg.root_dir.clone(),
        pod_logs_dir: cfg.pod_logs_dir.clone(),
        cgroup_root: cfg.cgroup_root.clone(),
        cluster_dns: cfg.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
        cluster_domain: cfg.cluster_domain.clone(),
        host_dns: std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| cri::convert::parse_resolv_conf(&t))
            .unwrap_or_default(),
        node_name: node.to_string(),
        host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| node.to_string()),
        host_ip: cfg.node_ip.to_string(),
        memory_capacity: host
            .capacity
            .get("memory")
            .and_then(|q| parse_units(q))
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(0),
        log_rotation: cfg.log_rotation(),
        sync_frequency: cfg.sync_frequency,
        eviction_hard: cfg.eviction_hard,
    }
}

/// A process-unique, stable ID for a hollow node's `machineID` and `bootID`.
fn node_id(name: &str, salt: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:016x}", h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15)
}

fn node_params(
    cfg: &KubeletConfig,
    spec: &NodeSpec,
    host: &HostFacts,
    runtime_version: &str,
) -> NodeParams {
    NodeParams {
        name: spec.name.clone(),
        pod_cidr: Some(spec.pod_cidr.to_string()),
        internal_ip: cfg.node_ip.to_string(),
        capacity: host.capacity.clone(),
        allocatable: host.allocatable.clone(),
        labels: cfg.node_labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        kubelet_port: i32::from(cfg.port),
        runtime_version: runtime_version.to_string(),
        os_image: host.os_image.clone(),
        kernel_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        machine_id: node_id(&spec.name, "machine"),
        boot_id: node_id(&spec.name, &std::process::id().to_string()),
    }
}

/// Registers the node: create it; when it exists already, keep its pod range (immutable once
/// set), bring its default labels back and write the status afresh.
async fn try_register(client: &ApiClient, p: &mut NodeParams) -> Result<Node, ApiError> {
    let health = NodeHealth::healthy();
    let node = node::initial_node(p, &health, Timestamp::now());
    match client.create("", &node).await {
        Ok(n) => return Ok(n),
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    let existing: Node = client.get("", &p.name).await?;
    let have_cidr = existing.spec.as_ref().and_then(|s| s.pod_cidr.clone());
    let mut main = json!({"metadata": {"labels": node.metadata.labels}});
    match have_cidr {
        Some(c) => p.pod_cidr = Some(c),
        None => {
            main["spec"] =
                json!({"podCIDR": p.pod_cidr, "podCIDRs": p.pod_cidr.as_ref().map(|c| vec![c])})
        }
    }
    client
        .patch::<Node>("", &p.name, &Patch::Merge(main))
        .await?;
    let status = node::node_status(p, existing.status.as_ref(), &health, Timestamp::now());
    client
        .patch_status("", &p.name, &Patch::Merge(json!({"status": status})))
        .await
}

/// Registers until it works or `shutdown` flips (`None` then).
async fn register(
    client: &ApiClient,
    mut p: NodeParams,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(NodeParams, Node)> {
    let mut retry = REGISTER_RETRY_FIRST;
    loop {
        match try_register(client, &mut p).await {
            Ok(n) => return Some((p, n)),
            Err(e) => {
                warn!(node = %p.name, error = %e, retry_in = ?retry, "register node");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.wait_for(|s| *s) => return None,
        }
        retry = (retry * 2).min(REGISTER_RETRY_MAX);
    }
}

/// Keeps the node's status: computed every `update` with the runtime's view of the node's
/// health, written when it changed or `report` passed since the last write; before a write
/// the Node is read again from the apiserver, as the kubelet does, so that what others
/// changed in its status is kept.
#[allow(clippy::too_many_arguments)]
async fn status_loop<R: Runtime>(
    client: ApiClient,
    p: NodeParams,
    node: Arc<NodePods<R>>,
    mut last: NodeStatus,
    update: Duration,
    report: Duration,
    first_delay: Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_report = Timestamp::now();
    let mut wait = first_delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        wait = update;
        let now = Timestamp::now();
        let health = node.runtime.node_health().await;
        let new = node::node_status(&p, Some(&last), &health, now);
        if !node::should_report(Some(&last), &new, last_report, now, report) {
            continue;
        }
        let new = match client.get::<Node>("", &p.name).await {
            Ok(n) => node::node_status(&p, n.status.as_ref(), &health, now),
            Err(e) => {
                warn!(node = %p.name, error = %e, "read node before its status update");
                continue;
            }
        };
        match client
            .patch_status::<Node>("", &p.name, &Patch::Merge(json!({"status": new})))
            .await
        {
            Ok(n) => {
                metrics.node_status_writes.inc();
                last = n.status.unwrap_or(new);
                last_report = now;
            }
            Err(e) => warn!(node = %p.name, error = %e, "update node status"),
        }
    }
}

/// The component server, with the kubelet's `/containerLogs` and `/exec` (`server`).
fn spawn_server(
    cfg: &KubeletConfig,
    served: Served,
    pods: PodCache,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if cfg.port == 0 {
        return Ok(None);
    }
    let addr = SocketAddr::new(cfg.bind_address, cfg.port);
    let cri = match &cfg.container_runtime_endpoint {
        Some(e) => Some(CriClient::connect(e, CRI_TIMEOUT)?),
        None => None,
    };
    let state = ServerState::new(pods, cfg.pod_logs_dir.clone(), cri);
    let router = crate::server::routes(server::router(served), state);
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = server::serve(addr, router, shutdown).await {
            warn!(error = %e, "component server stopped");
        }
    })))
}

async fn run_nodes<R: Runtime>(
    cfg: &KubeletConfig,
    specs: Vec<NodeSpec>,
    host: HostFacts,
    make_runtime: impl Fn(Option<Ipv4Cidr>, &Recorder, &ApiClient) -> R,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Writes carry the kubelet's field manager, recorded in managedFields.
    let client = ApiClient::connect(&cfg.apiserver)
        .await
        .context("connect to the apiserver")?
        .with_field_manager(FIELD_MANAGER);
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let queue_metrics = QueueMetrics::register(&mut registry);
    let health = Health::new();
    health.set("syncloop", Err("nodes not registered yet".into()));
    let served = Served {
        registry: Arc::new(RwLock::new(registry)),
        health: health.clone(),
    };
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let pod_cache = PodCache::default();
    tasks.extend(spawn_server(
        cfg,
        served,
        pod_cache.clone(),
        shutdown.clone(),
    )?);

    // One recorder for the process: its events name the node as their host when it hosts
    // one, else the base name of its nodes.
    let recorder_host = match specs.as_slice() {
        [one] => one.name.clone(),
        _ => cfg.node_name.clone().unwrap_or_else(|| "hollow".into()),
    };
    let (recorder, recorder_task) = Recorder::new(client.clone(), "kubelet", &recorder_host);

    // Register every node, a bounded number at a time.
    let runtime_version = make_runtime(None, &recorder, &client).version();
    let started = Instant::now();
    let params: Vec<NodeParams> = specs
        .iter()
        .map(|s| node_params(cfg, s, &host, &runtime_version))
        .collect();
    let registered: Vec<Option<(NodeParams, Node)>> = futures::stream::iter(params)
        .map(|p| register(&client, p, shutdown.clone()))
        .buffered(REGISTER_CONCURRENCY)
        .collect()
        .await;
    let Some(registered) = registered.into_iter().collect::<Option<Vec<_>>>() else {
        info!("stopped before every node was registered");
        return Ok(());
    };
    metrics
        .nodes_registered
        .set(i64::try_from(registered.len()).unwrap_or(i64::MAX));
    info!(
        nodes = registered.len(),
        elapsed_ms = started.elapsed().as_millis(),
        runtime = %runtime_version,
        "nodes registered"
    );

    // Leases and node status, their first rounds spread over the interval.
    let n = u32::try_from(registered.len()).unwrap_or(u32::MAX).max(1);
    let mut nodes = Vec::with_capacity(registered.len());
    let mut by_name = HashMap::with_capacity(registered.len());
    for (i, (p, node)) in registered.into_iter().enumerate() {
        let idx = u32::try_from(i).unwrap_or(u32::MAX);
        let lp = LeaseParams {
            node: p.name.clone(),
            duration_seconds: cfg.node_lease_duration_seconds,
            node_uid: node.metadata.uid.clone(),
        };
        // The first renewal at once, the following ones spread over the interval.
        let phase = lp.renew_interval() * idx / n;
        tasks.push(tokio::spawn(lease::run(
            client.clone(),
            lp,
            phase,
            metrics.clone(),
            shutdown.clone(),
        )));
        let cidr = p.pod_cidr.as_deref().and_then(|c| c.parse().ok());
        let pods_of_node = Arc::new(NodePods::new(
            p.name.clone(),
            p.internal_ip.clone(),
            host.admission(cfg),
            make_runtime(cidr, &recorder, &client),
        ));
        let status_spread = cfg.node_status_update_frequency * idx / n;
        tasks.push(tokio::spawn(status_loop(
            client.clone(),
            p.clone(),
            pods_of_node.clone(),
            node.status.clone().unwrap_or_default(),
            cfg.node_status_update_frequency,
            cfg.node_status_report_frequency,
            status_spread,
            metrics.clone(),
            shutdown.clone(),
        )));
        by_name.insert(p.name.clone(), idx);
        nodes.push(pods_of_node);
    }
    // What the runtime already runs (a restarted kubelet's pods): listed before the pod
    // watch syncs, adopted or stopped after.
    let mut found: Vec<(u32, String, String)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let idx = u32::try_from(i).unwrap_or(u32::MAX);
        for (uid, key) in node.runtime.relist().await {
            found.push((idx, uid, key));
        }
    }

    // One watch of the pods bound to the hosted nodes (all bound pods when there are many:
    // a field selector names one node only).
    let field_selector = if nodes.len() == 1 {
        format!("spec.nodeName={}", nodes[0].name)
    } else {
        "spec.nodeName!=".to_string()
    };
    let (store, mut events, reflector_task) = reflector::reflector::<Pod>(
        client.clone(),
        None,
        reflector::Config {
            field_selector,
            ..Default::default()
        },
        shutdown.clone(),
    );
    let _ = pod_cache.set(store.clone());
    let pods = Arc::new(Pods {
        client: client.clone(),
        store: store.clone(),
        nodes,
        by_name,
        metrics: metrics.clone(),
        recorder,
    });
    let queue: WorkQueue<Work> =
        WorkQueue::with_metrics("kubelet_pods", QueueConfig::default(), &queue_metrics);
    let router = {
        let (pods, queue) = (pods.clone(), queue.clone());
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    Event::Applied { new, .. } => {
                        pods.work_for(&new).into_iter().for_each(|w| queue.add(w))
                    }
                    Event::Deleted(old) => {
                        pods.work_for(&old).into_iter().for_each(|w| queue.add(w))
                    }
                    // After a relist, what runs is checked again: its deletion may have been missed.
                    Event::Resynced => pods.running_work().into_iter().for_each(|w| queue.add(w)),
                }
            }
        })
    };
    let mut stop = shutdown.clone();
    tokio::select! {
        _ = store.wait_synced() => {}
        _ = stop.wait_for(|s| *s) => {
            queue.shut_down();
            router.abort();
            let _ = reflector_task.await;
            for t in tasks { let _ = t.await; }
            return Ok(());
        }
    }
    // Pods a previous kubelet admitted count before any newcomer.
    for p in store.list() {
        if let Some(w) = pods.work_for(&p)
            && crate::admission::was_admitted(&p)
            && !status::pod_is_terminal(&p)
            && let Some(n) = usize::try_from(w.node).ok().and_then(|i| pods.nodes.get(i))
        {
            n.readmit(&p);
        }
    }
    // Pods the runtime runs: a sync adopts each (same containers, no restart) or, when the
    // apiserver no longer has it, stops it.
    for (idx, uid, key) in found {
        if let Some(node) = usize::try_from(idx).ok().and_then(|i| pods.nodes.get(i)) {
            if node.note_running(&key, &uid) {
                metrics.running_pods.inc();
            }
            queue.add(Work { node: idx, key });
        }
    }
    // The relist (the kubelet's PLEG): containers that died or vanished wake their pod's sync.
    let relist = {
        let (pods, queue, mut stop) = (pods.clone(), queue.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELIST_PERIOD) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                for (i, node) in pods.nodes.iter().enumerate() {
                    let Ok(idx) = u32::try_from(i) else { break };
                    for (_, key) in node.runtime.relist().await {
                        queue.add(Work { node: idx, key });
                    }
                }
            }
        })
    };
    health.set("syncloop", Ok(()));
    health.set_ready(true);
    let sync = {
        let pods = pods.clone();
        move |w: Work| {
            let pods = pods.clone();
            async move { pods.sync(w).await }
        }
    };
    run_workers(
        queue.clone(),
        usize::try_from(cfg.workers).unwrap_or(1),
        sync,
        shutdown.clone(),
    )
    .await;
    queue.shut_down();
    router.abort();
    relist.abort();
    let _ = reflector_task.await;
    for t in tasks {
        let _ = t.await;
    }
    // The recorder's writers end once every clone is gone and what was queued is written.
    drop(pods);
    let _ = tokio::time::timeout(Duration::from_secs(2), recorder_task).await;
    info!("kubelet stopped");
    Ok(())
}
