//! `bosun scheduler`: the scheduling loop around the pure core (kube-scheduler's
//! `scheduleOne`, its informers' event handlers and its binding goroutines).
//!
//! - Three watches (nodes, pods, ReplicaSets) feed one task that keeps the [`Snapshot`] (nodes
//!   and the pods bound to them), the [`SchedulingQueue`] (this scheduler's pending pods) and
//!   the ReplicaSet selectors that system-default spreading uses.
//! - One loop takes a pod at a time from the queue, runs the core against the live snapshot
//!   (no apiserver round trip), assumes the pod on the chosen node and hands the bind to a
//!   task; at most `--parallelism` binds are in flight, and the loop waits for a free slot
//!   before it decides, so a decision always sees every earlier one.
//! - A bind that fails is forgotten in the snapshot (the pod is never counted twice: the
//!   watch's bound pod replaces an assumed one) and the pod waits its back-off; a pod that is
//!   already bound (another scheduler won) or gone is not retried.
//! - A pod no node fits gets `PodScheduled=False` (reason Unschedulable, kube-scheduler's
//!   message) and a FailedScheduling event, and waits for a cluster event.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bosun_api_client::k8s_openapi::api::apps::v1::ReplicaSet;
use bosun_api_client::k8s_openapi::api::core::v1::{Node, Pod};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use bosun_api_client::{ApiClient, ApiError, Patch};
use bosun_runtime::leader::{LeaderElectionFlags, run_leader_served};
use bosun_runtime::server::{self, Health, Served};
use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::metrics::{Attempt, Metrics};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::report::{self, EventWriter};
use crate::watcher::{self, Event};
use crate::{
    PreparedPod, ScheduleError, Scheduler, SchedulerConfig, Snapshot, SplitMix64,
    default_spread_selector, pod_key,
};

/// `bosun scheduler` options (kube-scheduler's flags where they exist).
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerOptions {
    /// The apiserver's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub apiserver: String,
    /// Leader election (`--leader-elect*`; the Lease is `kube-system/kube-scheduler` by default).
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Percentage of nodes to find feasible before scoring (0: adaptive, 50% minus 1% per 125
    /// nodes, at least 5%; at least 100 nodes either way).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percentage_of_nodes_to_score: u32,
    /// Binds in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub parallelism: u32,
    /// Address of the /metrics and /healthz server.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Port of the /metrics and /healthz server; 0 disables it.
    #[arg(long, default_value_t = 10259)]
    pub port: u16,
    /// Schedule the pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            apiserver: "http://127.0.0.1:8080".into(),
            leader_election: LeaderElectionFlags::default(),
            percentage_of_nodes_to_score: 0,
            parallelism: 16,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            port: 10259,
            scheduler_name: "default-scheduler".into(),
        }
    }
}

pub use bosun_api::parse_duration;

/// Events buffered between a watch and the task that applies them.
const WATCH_CHANNEL: usize = 1024;
/// Events applied under one lock.
const APPLY_BATCH: usize = 256;
/// The condition's reason when the scheduler itself failed (`PodReasonSchedulerError`).
const REASON_SCHEDULER_ERROR: &str = "SchedulerError";
/// How long a stop waits for binds in flight.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the watches feed and the loop reads.
struct Shared {
    snapshot: Mutex<Snapshot>,
    queue: Mutex<SchedulingQueue>,
    /// ReplicaSet selectors by `namespace/name`, for system-default spreading.
    owners: Mutex<HashMap<String, LabelSelector>>,
    /// Woken when the queue may have a pod to pop.
    wake: Notify,
    metrics: Metrics,
    scheduler_name: String,
}

/// Runs the scheduler until `shutdown` flips (or, with leader election, leadership is lost).
pub async fn run(opts: SchedulerOptions, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = ApiClient::connect(&opts.apiserver)
        .await
        .context("connect to the apiserver")?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Health::new();
    health.set("informer-sync", Err("not synced yet".into()));
    let served = Served {
        registry: Arc::new(RwLock::new(registry)),
        health: health.clone(),
    };
    let mut tasks = JoinSet::new();
    if opts.port != 0 {
        let addr = SocketAddr::new(opts.bind_address, opts.port);
        let router = server::router(served.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = server::serve(addr, router, stop).await {
                warn!(error = %e, "component server stopped");
            }
        });
    }

    let shared = Arc::new(Shared {
        snapshot: Mutex::new(Snapshot::new()),
        queue: Mutex::new(SchedulingQueue::new()),
        owners: Mutex::new(HashMap::new()),
        wake: Notify::new(),
        metrics: metrics.clone(),
        scheduler_name: opts.scheduler_name.clone(),
    });
    let (node_tx, node_rx) = mpsc::channel(WATCH_CHANNEL);
    let (pod_tx, pod_rx) = mpsc::channel(WATCH_CHANNEL);
    let (rs_tx, rs_rx) = mpsc::channel(WATCH_CHANNEL);
    tasks.spawn(watcher::run::<Node>(
        client.clone(),
        String::new(),
        node_tx,
        shutdown.clone(),
    ));
    tasks.spawn(watcher::run::<Pod>(
        client.clone(),
        String::new(),
        pod_tx,
        shutdown.clone(),
    ));
    tasks.spawn(watcher::run::<ReplicaSet>(
        client.clone(),
        String::new(),
        rs_tx,
        shutdown.clone(),
    ));
    let (synced_tx, synced_rx) = watch::channel(false);
    tasks.spawn(feed(
        shared.clone(),
        node_rx,
        pod_rx,
        rs_rx,
        synced_tx,
        health.clone(),
        shutdown.clone(),
    ));
    let (events, events_task) = EventWriter::new(
        client.clone(),
        &opts.scheduler_name,
        metrics.clone(),
        shutdown.clone(),
    );

    let result = if opts.leader_election.leader_elect {
        lead_when_elected(
            &opts,
            client.clone(),
            &served,
            shared,
            events,
            synced_rx,
            shutdown,
        )
        .await
    } else {
        schedule_loop(&opts, client, shared, events, synced_rx, shutdown.clone()).await
    };
    events_task.abort();
    tasks.shutdown().await;
    result
}

/// Schedules while this replica holds the leader Lease (`kube-system/kube-scheduler` by
/// default); the watches run before, so a standby that takes over has warm caches. Losing
/// the lease ends the loop and the process with an error, as kube-scheduler exits.
async fn lead_when_elected(
    opts: &SchedulerOptions,
    client: ApiClient,
    served: &Served,
    shared: Arc<Shared>,
    events: EventWriter,
    synced: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = opts
        .leader_election
        .config("kube-scheduler")
        .context("leader election is off")?;
    let lead_client = client.clone();
    run_leader_served(client, config, Some(served), shutdown, move |stop| {
        schedule_loop(opts, lead_client, shared, events, synced, stop)
    })
    .await
    .context("leader election")
}

/// Applies the watches' events to the snapshot and the queue.
async fn feed(
    shared: Arc<Shared>,
    mut nodes: mpsc::Receiver<Event<Node>>,
    mut pods: mpsc::Receiver<Event<Pod>>,
    mut replicasets: mpsc::Receiver<Event<ReplicaSet>>,
    synced_tx: watch::Sender<bool>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut nodes_synced, mut pods_synced, mut rs_synced) = (false, false, false);
    let mut batch_nodes = Vec::with_capacity(APPLY_BATCH);
    let mut batch_pods = Vec::with_capacity(APPLY_BATCH);
    loop {
        tokio::select! {
            n = nodes.recv_many(&mut batch_nodes, APPLY_BATCH) => {
                if n == 0 { return; }
                nodes_synced |= batch_nodes.iter().any(|e| matches!(e, Event::Resynced));
                apply_nodes(&shared, batch_nodes.drain(..));
            }
            n = pods.recv_many(&mut batch_pods, APPLY_BATCH) => {
                if n == 0 { return; }
                pods_synced |= batch_pods.iter().any(|e| matches!(e, Event::Resynced));
                apply_pods(&shared, batch_pods.drain(..));
            }
            ev = replicasets.recv() => {
                let Some(ev) = ev else { return; };
                rs_synced |= matches!(ev, Event::Resynced);
                apply_replicaset(&shared, ev);
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if nodes_synced && pods_synced && rs_synced && !*synced_tx.borrow() {
            let (nodes, pods) = {
                let s = shared.snapshot.lock();
                (s.num_nodes(), s.num_pods())
            };
            info!(nodes, pods, "caches synced");
            health.set("informer-sync", Ok(()));
            health.set_ready(true);
            let _ = synced_tx.send(true);
        }
        shared.metrics.pending(shared.queue.lock().counts());
    }
}

/// Whether a node change may let pods fit that did not (`nodeSchedulingPropertiesChange`).
fn node_change_matters(old: Option<&Node>, new: &Node) -> bool {
    let Some(old) = old else { return true };
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.unschedulable, s.taints.clone()));
    let status = |n: &Node| {
        n.status.as_ref().map(|s| {
            let conditions: Vec<(String, String)> = s
                .conditions
                .iter()
                .flatten()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect();
            (s.allocatable.clone(), conditions)
        })
    };
    old.metadata.labels != new.metadata.labels
        || spec(old) != spec(new)
        || status(old) != status(new)
}

fn apply_nodes(shared: &Shared, events: impl Iterator<Item = Event<Node>>) {
    let now = Instant::now();
    let mut snapshot = shared.snapshot.lock();
    let mut moved = false;
    for ev in events {
        match ev {
            Event::Applied { old, new } => {
                if let Err(e) = snapshot.upsert_node(&new) {
                    warn!(node = ?new.metadata.name, error = %e, "node left out of the cache");
                    continue;
                }
                moved |= node_change_matters(old.as_deref(), &new);
            }
            Event::Deleted(node) => {
                snapshot.remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            Event::Resynced => {}
        }
    }
    if moved {
        shared.queue.lock().move_all_to_active_or_backoff(now);
        shared.wake.notify_one();
    }
}

/// Whether this scheduler should place the pod: ours by name, not bound, not terminating or
/// finished, no scheduling gates (`responsibleForPod` and the queue's pre-enqueue checks).
fn is_pending_for(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let name = spec
        .scheduler_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default-scheduler");
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    name == scheduler_name
        && spec.node_name.as_deref().unwrap_or_default().is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
}

fn apply_pods(shared: &Shared, events: impl Iterator<Item = Event<Pod>>) {
    let now = Instant::now();
    let mut snapshot = shared.snapshot.lock();
    let mut queue = shared.queue.lock();
    let mut moved = false;
    let mut added = false;
    for ev in events {
        match ev {
            Event::Applied { new, .. } => {
                let Ok(key) = pod_key(&new) else { continue };
                let bound = new
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if bound {
                    queue.delete(&key);
                    let was_there = snapshot.node_of(&key).is_some();
                    if let Err(e) = snapshot.upsert_pod(&new) {
                        warn!(pod = %key, error = %e, "bound pod left out of the cache");
                    }
                    // A pod that finished frees its node.
                    moved |= was_there && snapshot.node_of(&key).is_none();
                } else if snapshot.is_assumed(&key) {
                    // Our bind is in flight; this is an older state of the pod.
                } else if is_pending_for(&new, &shared.scheduler_name) {
                    queue.add_or_update(&key, new, now);
                    added = true;
                } else {
                    queue.delete(&key);
                }
            }
            Event::Deleted(pod) => {
                let Ok(key) = pod_key(&pod) else { continue };
                moved |= snapshot.node_of(&key).is_some();
                snapshot.remove_pod(&key);
                queue.delete(&key);
            }
            Event::Resynced => {}
        }
    }
    if moved {
        queue.move_all_to_active_or_backoff(now);
    }
    if moved || added {
        shared.wake.notify_one();
    }
}

fn apply_replicaset(shared: &Shared, ev: Event<ReplicaSet>) {
    let key = |rs: &ReplicaSet| {
        format!(
            "{}/{}",
            rs.metadata.namespace.as_deref().unwrap_or_default(),
            rs.metadata.name.as_deref().unwrap_or_default()
        )
    };
    let mut owners = shared.owners.lock();
    match ev {
        Event::Applied { new, .. } => {
            if let Some(spec) = new.spec.as_ref() {
                owners.insert(key(&new), spec.selector.clone());
            }
        }
        Event::Deleted(rs) => {
            owners.remove(&key(&rs));
        }
        Event::Resynced => {}
    }
}

/// The selector system-default spreading uses for the pod: its controlling ReplicaSet's.
fn owner_selector(shared: &Shared, pod: &Pod) -> Option<crate::DefaultSelector> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        owner.name
    );
    let owners = shared.owners.lock();
    default_spread_selector(&[], owners.get(&key))
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// The scheduling loop: runs until `stop` flips, then waits (a bounded time) for the binds
/// in flight.
async fn schedule_loop(
    opts: &SchedulerOptions,
    client: ApiClient,
    shared: Arc<Shared>,
    events: EventWriter,
    mut synced: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = synced.wait_for(|s| *s) => { r.context("wait for the caches")?; }
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    info!(scheduler = %opts.scheduler_name, "scheduling");
    let mut scheduler = Scheduler::new(SchedulerConfig {
        percentage_of_nodes_to_score: opts.percentage_of_nodes_to_score,
    });
    let mut rng = SplitMix64::new(seed());
    let parallelism = opts.parallelism as usize;
    let binds = Arc::new(Semaphore::new(parallelism));
    // Condition patches of unschedulable pods, bounded like binds.
    let reports = Arc::new(Semaphore::new(parallelism));
    loop {
        let permit = tokio::select! {
            p = binds.clone().acquire_owned() => p.context("bind slots closed")?,
            _ = stop.wait_for(|s| *s) => break,
        };
        let next = tokio::select! {
            p = next_pod(&shared) => p,
            _ = stop.wait_for(|s| *s) => break,
        };
        let started = Instant::now();
        let pod = next.pod.clone();
        let default_selector = owner_selector(&shared, &pod);
        // The node, or why none: the attempt's result, the condition's reason, the message.
        let decision = match PreparedPod::new(&pod, default_selector.as_ref()) {
            // A pod the core cannot read (a malformed quantity, say): reported, retried when
            // it changes.
            Err(e) => Err((Attempt::Error, REASON_SCHEDULER_ERROR, e.to_string())),
            Ok(prepared) => {
                let mut snapshot = shared.snapshot.lock();
                match scheduler.schedule_one(&snapshot, &prepared, &mut rng) {
                    Ok(r) => snapshot
                        .assume(&prepared, &r.node)
                        .map(|()| r.node)
                        .map_err(|e| (Attempt::Error, REASON_SCHEDULER_ERROR, e.to_string())),
                    Err(ScheduleError::NoNodesAvailable) => Err((
                        Attempt::Unschedulable,
                        report::REASON_UNSCHEDULABLE,
                        ScheduleError::NoNodesAvailable.to_string(),
                    )),
                    Err(ScheduleError::Unschedulable(fit)) => {
                        let never = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.preemption_policy.as_deref())
                            == Some("Never");
                        Err((
                            Attempt::Unschedulable,
                            report::REASON_UNSCHEDULABLE,
                            report::unschedulable_message(&fit, never),
                        ))
                    }
                }
            }
        };
        match decision {
            Ok(node) => {
                shared.queue.lock().done(&next.key);
                tokio::spawn(bind(
                    client.clone(),
                    shared.clone(),
                    events.clone(),
                    next,
                    node,
                    started,
                    permit,
                ));
            }
            Err((attempt, reason, message)) => {
                drop(permit);
                shared.metrics.attempt(attempt);
                debug!(pod = %next.key, %message, "not scheduled");
                shared.queue.lock().add_unschedulable(&next, Instant::now());
                report_failure(&client, &events, &reports, &pod, reason, message).await;
            }
        }
    }
    // Let the binds in flight finish.
    let _ = tokio::time::timeout(STOP_WAIT, binds.acquire_many(opts.parallelism)).await;
    let _ = tokio::time::timeout(STOP_WAIT, reports.acquire_many(opts.parallelism)).await;
    Ok(())
}

/// The next pod to schedule, waiting for one (and for back-offs to end).
async fn next_pod(shared: &Shared) -> QueuedPod {
    loop {
        let next_flush = {
            let mut queue = shared.queue.lock();
            queue.flush(Instant::now());
            if let Some(p) = queue.pop() {
                shared.metrics.pending(queue.counts());
                return p;
            }
            queue.next_flush()
        };
        let wait = next_flush.map_or(Duration::from_secs(1), |at| {
            at.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        });
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sets `PodScheduled=False` (unless already so) and records a FailedScheduling event.
async fn report_failure(
    client: &ApiClient,
    events: &EventWriter,
    slots: &Arc<Semaphore>,
    pod: &Pod,
    reason: &str,
    message: String,
) {
    events.record(
        &report::pod_ref(pod),
        "Warning",
        report::REASON_FAILED_SCHEDULING,
        message.clone(),
    );
    if report::has_condition(pod, reason, &message) {
        return;
    }
    let Ok(permit) = slots.clone().acquire_owned().await else {
        return;
    };
    let client = client.clone();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = report::unschedulable_patch(reason, &message, Timestamp::now());
    tokio::spawn(async move {
        if let Err(e) = client
            .patch_status::<Pod>(&ns, &name, &Patch::Strategic(patch))
            .await
            && !e.is_not_found()
        {
            warn!(pod = %format!("{ns}/{name}"), error = %e, "set PodScheduled=False");
        }
        drop(permit);
    });
}

/// Whether a bind error means the pod is bound already (another scheduler won the race).
/// Likewise for a pod being deleted: neither is retried.
fn already_bound(e: &ApiError) -> bool {
    e.code == 409
        && (e.message.contains("is already assigned to node")
            || e.message.contains("pod is being deleted"))
}

/// Binds the pod; undoes the assumption and requeues it when the bind fails (unless the watch
/// already shows it bound).
async fn bind(
    client: ApiClient,
    shared: Arc<Shared>,
    events: EventWriter,
    pod: QueuedPod,
    node: String,
    started: Instant,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ns = pod.pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let bind_start = Instant::now();
    let result = client.bind(&ns, &name, &node).await;
    drop(permit);
    shared.metrics.binding(bind_start.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            shared.metrics.attempt(Attempt::Scheduled);
            shared.metrics.e2e(started.elapsed().as_secs_f64());
            events.record(
                &report::pod_ref(&pod.pod),
                "Normal",
                report::REASON_SCHEDULED,
                report::scheduled_message(&ns, &name, &node),
            );
        }
        Err(e) => {
            // Never counted twice: a pod the watch already showed bound is no longer assumed.
            let bound_to = shared.snapshot.lock().forget_failed_bind(&pod.key);
            if e.is_not_found() || already_bound(&e) {
                debug!(pod = %format!("{ns}/{name}"), error = %e, "bind not needed");
                return;
            }
            shared.metrics.attempt(Attempt::Error);
            warn!(pod = %format!("{ns}/{name}"), %node, error = %e, "bind failed");
            events.record(
                &report::pod_ref(&pod.pod),
                "Warning",
                report::REASON_FAILED_SCHEDULING,
                format!("Binding rejected: {}", e.message),
            );
            if let Some(bound_to) = bound_to {
                info!(
                    pod = %format!("{ns}/{name}"),
                    node = %bound_to,
                    "Pod has been assigned to node. Abort adding it back to queue."
                );
                return;
            }
            shared.queue.lock().requeue_backoff(pod, Instant::now());
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bosun_api_client::k8s_openapi::api::core::v1::PodSpec;

    #[test]
    fn durations_parse_as_go_does() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        // Go's rule: a number needs a unit.
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn pending_pods_are_ours_unbound_and_alive() {
        let mut pod = Pod {
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        assert!(is_pending_for(&pod, "default-scheduler"));
        assert!(!is_pending_for(&pod, "other"));
        pod.spec.as_mut().unwrap().scheduler_name = Some("other".into());
        assert!(is_pending_for(&pod, "other"));
        pod.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert!(!is_pending_for(&pod, "other"));
    }

    #[test]
    fn heartbeats_do_not_move_unschedulable_pods() {
        use bosun_api_client::k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
        let node = |ready: &str, heartbeat: &str| Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some(heartbeat.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(node_change_matters(None, &node("True", "a")));
        assert!(!node_change_matters(
            Some(&node("True", "a")),
            &node("True", "b")
        ));
        assert!(node_change_matters(
            Some(&node("False", "a")),
            &node("True", "a")
        ));
    }
}
