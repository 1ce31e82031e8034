//! The node lifecycle controller's decisions (`pkg/controller/nodelifecycle`,
//! `pkg/controller/tainteviction`, `pkg/controller/util/node`), as pure functions of the
//! objects seen and the time `now`:
//!
//! - [`observe`] (`tryUpdateNodeHealth`'s bookkeeping): when the controller last saw a node
//!   alive, by its own clock: a changed Ready condition or a renewed Lease in
//!   `kube-node-lease` counts as a probe. A controller that starts afresh counts every node
//!   as just probed, as Kubernetes does.
//! - [`stale_conditions`]: past the grace period (`--node-monitor-grace-period`, or
//!   `--node-startup-grace-period` for a node that never reported Ready), every condition the
//!   kubelet owns becomes Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
//!   status.").
//! - [`desired_taints`]: `doNoScheduleTaintingPass`: Ready False gives
//!   `node.kubernetes.io/not-ready`, Unknown `node.kubernetes.io/unreachable`, pressure
//!   conditions and `spec.unschedulable` their NoSchedule taints; Ready True removes them.
//! - The NoExecute not-ready and unreachable taints ([`swap_no_execute_taints`]) go through
//!   [`NoExecuteTainter`]: `processTaintBaseEviction` queues a node that is not ready in its
//!   zone's rate-limited queue (`zoneNoExecuteTainter`, a [`RateLimitedTimedQueue`]), and
//!   `doNoExecuteTaintingPass` taints the queued nodes as fast as the zone's rate allows.
//! - Zones ([`zone_key`], `GetZoneKey`) and their states ([`compute_zone_state`],
//!   `ComputeZoneState`): the rate of a zone follows its state (`--node-eviction-rate` when
//!   Normal, [`EvictionRates::reduced_qps`] when PartialDisruption, `HealthyQPSFunc` when
//!   FullDisruption), and when every zone is FullDisruption the controller enters "master
//!   disruption mode" (`handleDisruption`): no new taints, the NoExecute taints removed.
//! - [`pod_eviction`]: the taint eviction controller's decision for one pod on a node with
//!   NoExecute taints: delete now (a taint it does not tolerate), at the end of its shortest
//!   `tolerationSeconds`, never (tolerated forever), or cancel a pending deletion when the
//!   taints went away; [`disruption_target`] is the condition it sets before deleting.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, PodCondition, PodStatus, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `node.kubernetes.io/not-ready`: the node's Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: the node's Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`: `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// `node.kubernetes.io/memory-pressure`.
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// `node.kubernetes.io/disk-pressure`.
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// `node.kubernetes.io/pid-pressure`.
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// `node.kubernetes.io/network-unavailable`.
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The conditions the kubelet owns and the controller marks Unknown when it goes silent.
pub const NODE_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The NoSchedule taints that follow a condition (`nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_DISK_PRESSURE),
    ("PIDPressure", "True", TAINT_PID_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NETWORK_UNAVAILABLE),
];

/// What the controller remembers of a node (`nodeHealthData`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// When the controller last saw the node alive, by its own clock.
    pub probe: Timestamp,
    /// The Ready condition last seen.
    pub ready: Option<NodeCondition>,
    /// The Lease's renewTime last seen.
    pub lease_renew: Option<Timestamp>,
}

/// A node's condition of this type.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The status of the node's Ready condition (`None` when it has none).
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// `tryUpdateNodeHealth`'s probe bookkeeping: the node's health after seeing `node` and its
/// `lease` at `now`. A changed Ready condition or a Lease renewed since the last look is a
/// probe; a node seen for the first time counts as probed now.
pub fn observe(
    prev: Option<&NodeHealth>,
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
) -> NodeHealth {
    let ready = condition(node, "Ready").cloned();
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let Some(prev) = prev else {
        return NodeHealth {
            probe: now,
            ready,
            lease_renew: renew,
        };
    };
    let mut probe = prev.probe;
    if prev.ready != ready {
        probe = now;
    }
    let lease_renew = match (prev.lease_renew, renew) {
        (Some(old), Some(new)) if new > old => {
            probe = now;
            Some(new)
        }
        (None, Some(new)) => {
            probe = now;
            Some(new)
        }
        (old, _) => old,
    };
    NodeHealth {
        probe,
        ready,
        lease_renew,
    }
}

/// The grace period that applies to `node`: the startup one until it has reported Ready.
pub fn grace_period(
    node: &Node,
    monitor_grace: std::time::Duration,
    startup_grace: std::time::Duration,
) -> std::time::Duration {
    if condition(node, "Ready").is_some() {
        monitor_grace
    } else {
        startup_grace
    }
}

/// The node's conditions once it has been silent past `grace` since `health.probe`, or
/// `None` when it is not silent or they are Unknown already. Conditions that were never
/// posted are added as Unknown (`NodeStatusNeverUpdated`).
pub fn stale_conditions(
    node: &Node,
    health: &NodeHealth,
    grace: std::time::Duration,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let deadline = health.probe.checked_add(grace).unwrap_or(Timestamp::MAX);
    if now <= deadline {
        return None;
    }
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in NODE_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                changed = true;
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
            }
            Some(c) if c.status != "Unknown" => {
                changed = true;
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

fn is_managed(t: &Taint) -> bool {
    t.effect == "NoSchedule"
        && (t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|c| c.2 == t.key))
}

/// The node's NoSchedule taints as the controller wants them (`doNoScheduleTaintingPass`),
/// or `None` when they already are: the condition taints follow the conditions, other
/// taints (the NoExecute ones included, [`NoExecuteTainter`]'s) are kept as they are.
pub fn desired_taints(node: &Node) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut want: Vec<(&str, &str)> = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            want.push((key, "NoSchedule"));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in want {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: None,
                value: None,
            });
        }
    }
    (out != current).then_some(out)
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// `SwapNodeControllerTaint`: the node's taints with the NoExecute taint `add` (stamped
/// `timeAdded = now`) and without the NoExecute taints `remove`, or `None` when nothing
/// changes.
pub fn swap_no_execute_taints(
    node: &Node,
    add: Option<&str>,
    remove: &[&str],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !(t.effect == "NoExecute" && remove.contains(&t.key.as_str())))
        .cloned()
        .collect();
    if let Some(key) = add
        && !out.iter().any(|t| t.key == key && t.effect == "NoExecute")
    {
        out.push(Taint {
            key: key.to_string(),
            effect: "NoExecute".into(),
            time_added: Some(Time(now)),
            value: None,
        });
    }
    (out != current).then_some(out)
}

/// `topology.kubernetes.io/zone`.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// `topology.kubernetes.io/region`.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
/// The deprecated `failure-domain.beta.kubernetes.io/zone`, still read first.
pub const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
/// The deprecated `failure-domain.beta.kubernetes.io/region`, still read first.
pub const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
/// `node.kubernetes.io/exclude-disruption`: a node not counted in its zone's state.
pub const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// `GetZoneKey`: `region:\0:zone` from the node's labels (the beta labels first), or ""
/// when it has neither.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |beta: &str, ga: &str| {
        labels
            .and_then(|l| l.get(beta).or_else(|| l.get(ga)))
            .map(String::as_str)
            .unwrap_or("")
    };
    let zone = get(LABEL_ZONE_BETA, LABEL_ZONE);
    let region = get(LABEL_REGION_BETA, LABEL_REGION);
    if zone.is_empty() && region.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

/// Whether the node is left out of its zone's state (`isNodeExcludedFromDisruptionChecks`).
pub fn excluded_from_disruption(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_EXCLUDE_DISRUPTION))
}

/// A zone's state (`ZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Seen for the first time.
    Initial,
    /// Healthy enough: the normal eviction rate.
    Normal,
    /// Many nodes not ready: a reduced rate (none in a small cluster).
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

impl ZoneState {
    /// Kubernetes' name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneState::Initial => "Initial",
            ZoneState::Normal => "Normal",
            ZoneState::PartialDisruption => "PartialDisruption",
            ZoneState::FullDisruption => "FullDisruption",
        }
    }
}

/// `ComputeZoneState`: from the Ready status of each node of a zone (`None`: no Ready
/// condition, counted not ready), the number of nodes not ready and the state. Partial
/// disruption takes more than two nodes not ready, making at least `unhealthy_threshold`
/// of the zone.
pub fn compute_zone_state(ready: &[Option<&str>], unhealthy_threshold: f32) -> (usize, ZoneState) {
    let ready_nodes = ready.iter().filter(|s| **s == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    #[allow(clippy::cast_precision_loss)]
    let fraction = not_ready as f32 / ready.len().max(1) as f32;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && fraction >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// The eviction (here: NoExecute tainting) rates, kube-controller-manager's flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvictionRates {
    /// `--node-eviction-rate`: nodes per second per zone when the zone is healthy.
    pub eviction_qps: f32,
    /// `--secondary-node-eviction-rate`: nodes per second per zone in a large cluster's
    /// partially disrupted zone.
    pub secondary_qps: f32,
    /// `--large-cluster-size-threshold`: more nodes than this in a zone make it large.
    pub large_cluster_threshold: usize,
    /// `--unhealthy-zone-threshold`: the fraction of nodes not ready that disrupts a zone.
    pub unhealthy_zone_threshold: f32,
}

impl Default for EvictionRates {
    fn default() -> Self {
        EvictionRates {
            eviction_qps: 0.1,
            secondary_qps: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

impl EvictionRates {
    /// `ReducedQPSFunc`: a large zone slows down, a small one stops.
    pub fn reduced_qps(&self, zone_size: usize) -> f32 {
        if zone_size > self.large_cluster_threshold {
            self.secondary_qps
        } else {
            0.0
        }
    }

    /// `HealthyQPSFunc`: the normal rate.
    pub fn healthy_qps(&self, _zone_size: usize) -> f32 {
        self.eviction_qps
    }

    /// `setLimiterInZone`: the rate of a zone of this size in this state (`None`: Initial,
    /// which keeps the rate it has).
    pub fn zone_qps(&self, state: ZoneState, zone_size: usize) -> Option<f32> {
        match state {
            ZoneState::Initial => None,
            ZoneState::Normal => Some(self.eviction_qps),
            ZoneState::PartialDisruption => Some(self.reduced_qps(zone_size)),
            ZoneState::FullDisruption => Some(self.healthy_qps(zone_size)),
        }
    }
}

/// client-go's token bucket rate limiter with a burst of one (`EvictionRateLimiterBurst`),
/// or one that never accepts (`NewFakeNeverRateLimiter`) at a rate of zero; time is given.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    qps: f32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket (one token) at `qps` per second.
    pub fn new(qps: f32, now: Instant) -> Self {
        TokenBucket {
            qps,
            tokens: 1.0,
            last: now,
        }
    }

    /// Its rate.
    pub fn qps(&self) -> f32 {
        self.qps
    }

    /// `TryAccept`: takes a token if one is there at `now`.
    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(self.qps)).min(1.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One node waiting in a zone's queue (`TimedValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedValue {
    /// The node's name.
    pub value: String,
    /// Its uid when queued.
    pub uid: String,
    /// When it was queued.
    pub added: Instant,
    /// When it is due.
    pub process_at: Instant,
}

/// `RateLimitedTimedQueue`: a zone's nodes to taint, each once (`UniqueQueue`: a node
/// taken off the queue stays in its set until [`RateLimitedTimedQueue::remove`]), oldest
/// due first, at most as fast as its [`TokenBucket`].
#[derive(Debug, Clone)]
pub struct RateLimitedTimedQueue {
    queue: BTreeSet<(Instant, String)>,
    values: HashMap<String, TimedValue>,
    set: HashSet<String>,
    limiter: TokenBucket,
}

impl RateLimitedTimedQueue {
    /// An empty queue limited to `qps`.
    pub fn new(qps: f32, now: Instant) -> Self {
        RateLimitedTimedQueue {
            queue: BTreeSet::new(),
            values: HashMap::new(),
            set: HashSet::new(),
            limiter: TokenBucket::new(qps, now),
        }
    }

    /// The current rate.
    pub fn qps(&self) -> f32 {
        self.limiter.qps()
    }

    /// Nodes waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no node waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// `Add`: queues the node unless it is in the set already; whether it was added.
    pub fn add(&mut self, value: &str, uid: &str, now: Instant) -> bool {
        if !self.set.insert(value.to_string()) {
            return false;
        }
        self.values.insert(
            value.to_string(),
            TimedValue {
                value: value.to_string(),
                uid: uid.to_string(),
                added: now,
                process_at: now,
            },
        );
        self.queue.insert((now, value.to_string()));
        true
    }

    /// `Remove`: off the queue and out of the set; whether it was in the set.
    pub fn remove(&mut self, value: &str) -> bool {
        if let Some(v) = self.values.remove(value) {
            self.queue.remove(&(v.process_at, v.value));
        }
        self.set.remove(value)
    }

    /// `SwapLimiter`: a new rate; a new bucket starts empty if the old one was (burst 1).
    pub fn swap_limiter(&mut self, qps: f32, now: Instant) {
        #[allow(clippy::float_cmp)]
        if self.limiter.qps() == qps {
            return;
        }
        let mut next = TokenBucket::new(qps, now);
        if qps > 0.0 && !self.limiter.try_accept(now) {
            next.try_accept(now);
        }
        self.limiter = next;
    }

    /// `Try`: hands due nodes to `f` while the limiter accepts; `f` says whether the node is
    /// done (taken off the queue, kept in the set) or to be retried after a delay.
    pub fn try_pass(
        &mut self,
        now: Instant,
        mut f: impl FnMut(&TimedValue) -> Result<(), Duration>,
    ) {
        while let Some((at, name)) = self.queue.first().cloned() {
            if !self.limiter.try_accept(now) {
                break;
            }
            if now < at {
                break;
            }
            self.queue.remove(&(at, name.clone()));
            let Some(mut v) = self.values.remove(&name) else {
                continue;
            };
            match f(&v) {
                Ok(()) => {}
                Err(wait) => {
                    v.process_at = now + wait + Duration::from_nanos(1);
                    self.queue.insert((v.process_at, name.clone()));
                    self.values.insert(name, v);
                }
            }
        }
    }
}

/// What [`NoExecuteTainter::process_node`] asks of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaintAction {
    /// Nothing now (maybe queued).
    Nothing,
    /// Swap the NoExecute taints at once: add the first, remove the second.
    Swap(&'static str, &'static str),
    /// `markNodeAsReachable`: remove both NoExecute taints.
    MarkReachable,
}

/// What [`NoExecuteTainter::handle_disruption`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruption {
    /// Nothing new, or zones changed state (listed with their new state).
    Zones(Vec<(String, ZoneState)>),
    /// Every zone is FullDisruption: "master disruption mode"; every node's NoExecute
    /// taints are to be removed.
    Entered,
    /// Some node is ready again: disruption mode left; every node's probe is to be reset.
    Exited,
}

/// One zone's view for the metrics: size, nodes not ready, state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneView {
    /// Nodes counted in the zone.
    pub size: usize,
    /// Of which not ready.
    pub unhealthy: usize,
    /// The state computed.
    pub state: ZoneState,
}

impl ZoneView {
    /// `node_collector_zone_health`: the percentage of ready nodes.
    pub fn health(&self) -> f64 {
        if self.size == 0 {
            return 100.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let h = 100.0 * (self.size - self.unhealthy) as f64 / self.size as f64;
        h
    }
}

/// The zones, their states and their NoExecute tainting queues (`zoneStates`,
/// `zoneNoExecuteTainter`).
#[derive(Debug, Clone)]
pub struct NoExecuteTainter {
    rates: EvictionRates,
    states: BTreeMap<String, ZoneState>,
    queues: BTreeMap<String, RateLimitedTimedQueue>,
}

impl NoExecuteTainter {
    /// No zone yet.
    pub fn new(rates: EvictionRates) -> Self {
        NoExecuteTainter {
            rates,
            states: BTreeMap::new(),
            queues: BTreeMap::new(),
        }
    }

    /// A zone's state.
    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).copied()
    }

    /// The zones known.
    pub fn zones(&self) -> Vec<String> {
        self.states.keys().cloned().collect()
    }

    /// A zone's queue.
    pub fn queue(&self, zone: &str) -> Option<&RateLimitedTimedQueue> {
        self.queues.get(zone)
    }

    /// `addPodEvictorForNewZone`: a zone seen for the first time starts Initial, at the
    /// normal rate; whether it is new.
    pub fn add_zone(&mut self, zone: &str, now: Instant) -> bool {
        if self.states.contains_key(zone) {
            return false;
        }
        self.states.insert(zone.to_string(), ZoneState::Initial);
        self.queues.insert(
            zone.to_string(),
            RateLimitedTimedQueue::new(self.rates.eviction_qps, now),
        );
        true
    }

    /// Takes the node off its zone's queue and set (`markNodeAsReachable`'s bookkeeping).
    pub fn forget(&mut self, zone: &str, node: &str) -> bool {
        self.queues.get_mut(zone).is_some_and(|q| q.remove(node))
    }

    /// `processTaintBaseEviction` for a node whose Ready condition was `observed` at the
    /// start of the pass: a node already carrying the opposite taint swaps at once, one
    /// without its taint is queued (`markNodeForTainting`), a ready one is reachable.
    pub fn process_node(&mut self, node: &Node, observed: &str, now: Instant) -> TaintAction {
        let zone = zone_key(node);
        let name = node.metadata.name.as_deref().unwrap_or("");
        let uid = node.metadata.uid.as_deref().unwrap_or("");
        let (want, opposite) = match observed {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            _ => {
                self.forget(&zone, name);
                return TaintAction::MarkReachable;
            }
        };
        if has_taint(node, opposite, "NoExecute") {
            return TaintAction::Swap(want, opposite);
        }
        self.add_zone(&zone, now);
        let Some(q) = self.queues.get_mut(&zone) else {
            return TaintAction::Nothing;
        };
        if !has_taint(node, want, "NoExecute") {
            q.remove(name);
        }
        q.add(name, uid, now);
        TaintAction::Nothing
    }

    /// `doNoExecuteTaintingPass`: every zone's due nodes, as fast as its rate allows, to
    /// `taint` (the node's name; `Ok` when done, `Err(wait)` to retry after `wait`).
    pub fn tainting_pass(
        &mut self,
        now: Instant,
        mut taint: impl FnMut(&str, &TimedValue) -> Result<(), Duration>,
    ) {
        for (zone, q) in &mut self.queues {
            q.try_pass(now, |v| taint(zone, v));
        }
    }

    /// `handleDisruption`: the zones' new states from the Ready status of their nodes
    /// (`zones`), the rates set accordingly, and whether master disruption mode is
    /// entered or left. Zones that have no node any more are dropped.
    pub fn handle_disruption(
        &mut self,
        zones: &BTreeMap<String, Vec<Option<&str>>>,
        now: Instant,
    ) -> (Disruption, BTreeMap<String, ZoneView>) {
        let mut views = BTreeMap::new();
        let mut all_are_fully_disrupted = true;
        for (zone, ready) in zones {
            let (unhealthy, state) = compute_zone_state(ready, self.rates.unhealthy_zone_threshold);
            if state != ZoneState::FullDisruption {
                all_are_fully_disrupted = false;
            }
            views.insert(
                zone.clone(),
                ZoneView {
                    size: ready.len(),
                    unhealthy,
                    state,
                },
            );
            self.add_zone(zone, now);
        }
        self.states.retain(|zone, _| zones.contains_key(zone));
        self.queues.retain(|zone, _| zones.contains_key(zone));
        let all_were_fully_disrupted = self
            .states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);
        if all_are_fully_disrupted && all_were_fully_disrupted {
            return (Disruption::Zones(Vec::new()), views);
        }
        if all_are_fully_disrupted {
            for q in self.queues.values_mut() {
                q.swap_limiter(0.0, now);
            }
            for s in self.states.values_mut() {
                *s = ZoneState::FullDisruption;
            }
            return (Disruption::Entered, views);
        }
        if all_were_fully_disrupted {
            for (zone, state) in &mut self.states {
                let view = views[zone];
                if let (Some(qps), Some(q)) = (
                    self.rates.zone_qps(view.state, view.size),
                    self.queues.get_mut(zone),
                ) {
                    q.swap_limiter(qps, now);
                }
                *state = view.state;
            }
            return (Disruption::Exited, views);
        }
        let mut changed = Vec::new();
        for (zone, state) in &mut self.states {
            let view = views[zone];
            if *state == view.state {
                continue;
            }
            if let (Some(qps), Some(q)) = (
                self.rates.zone_qps(view.state, view.size),
                self.queues.get_mut(zone),
            ) {
                q.swap_limiter(qps, now);
            }
            *state = view.state;
            changed.push((zone.clone(), view.state));
        }
        (Disruption::Zones(changed), views)
    }
}

/// The reason of the condition the taint eviction controller sets before deleting a pod.
pub const REASON_DELETION_BY_TAINT_MANAGER: &str = "DeletionByTaintManager";
/// Its message.
pub const MESSAGE_DELETION_BY_TAINT_MANAGER: &str =
    "Taint manager: deleting due to NoExecute taint";

/// `addConditionAndDeletePod`'s `DisruptionTarget=True` condition (PodDisruptionConditions),
/// or `None` when the pod has it already with the same status, reason and message
/// (`UpdatePodCondition` would change nothing).
pub fn disruption_target(status: Option<&PodStatus>, now: Timestamp) -> Option<PodCondition> {
    let existing = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"));
    if existing.is_some_and(|c| {
        c.status == "True"
            && c.reason.as_deref() == Some(REASON_DELETION_BY_TAINT_MANAGER)
            && c.message.as_deref() == Some(MESSAGE_DELETION_BY_TAINT_MANAGER)
    }) {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == "True" => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    Some(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(REASON_DELETION_BY_TAINT_MANAGER.into()),
        message: Some(MESSAGE_DELETION_BY_TAINT_MANAGER.into()),
        last_transition_time: transition,
        ..Default::default()
    })
}

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// A deletion the taint eviction controller has scheduled (`TimedWorker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// When it was scheduled.
    pub created: Timestamp,
    /// When the pod is to be deleted.
    pub fire: Timestamp,
}

/// The taint eviction controller's decision for one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Nothing to change.
    Keep,
    /// Delete the pod now ("Marking for deletion Pod ns/name").
    DeleteNow,
    /// Delete it at this time, unless its taints go first.
    Schedule(Scheduled),
    /// Its node's NoExecute taints went away: cancel the pending deletion ("Cancelling
    /// deletion of Pod ns/name").
    Cancel,
}

/// `processPodOnNode`: what to do with a pod whose node has these taints (of any effect;
/// only NoExecute ones count), given the deletion already scheduled for it.
pub fn pod_eviction(
    tolerations: &[Toleration],
    taints: &[Taint],
    scheduled: Option<&Scheduled>,
    now: Timestamp,
) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return if scheduled.is_some() {
            Eviction::Cancel
        } else {
            Eviction::Keep
        };
    }
    if scheduled.is_some_and(|s| s.fire <= now) {
        return Eviction::DeleteNow;
    }
    // `GetMatchingTolerations`: every taint needs a toleration.
    let mut used = Vec::new();
    for taint in no_execute {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return Eviction::DeleteNow,
        }
    }
    // `getMinTolerationTime`: the shortest tolerationSeconds; none means forever.
    let mut min: Option<i64> = None;
    for t in &used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Eviction::DeleteNow;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    let Some(secs) = min else {
        return Eviction::Keep;
    };
    if scheduled.is_some() {
        // An earlier schedule stands (Kubernetes keeps the first timer).
        return Eviction::Keep;
    }
    let fire = now
        .checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX);
    Eviction::Schedule(Scheduled { created: now, fire })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testutil::ts;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::time::Duration;

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        reason: Some("KubeletReady".into()),
                        last_heartbeat_time: Some(Time(ts(1))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(renew))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            ..Default::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn a_renewed_lease_is_a_probe_a_silent_one_is_not() {
        let n = node(Some("True"), vec![]);
        let h = observe(None, &n, Some(&lease(100)), ts(100));
        assert_eq!(h.probe, ts(100));
        // Same lease, same condition: no probe.
        let h = observe(Some(&h), &n, Some(&lease(100)), ts(130));
        assert_eq!(h.probe, ts(100));
        // Renewed: probe now.
        let h = observe(Some(&h), &n, Some(&lease(125)), ts(135));
        assert_eq!(h.probe, ts(135));
        // An older renewTime (a stale cache) is no probe.
        let h2 = observe(Some(&h), &n, Some(&lease(110)), ts(150));
        assert_eq!((h2.probe, h2.lease_renew), (ts(135), Some(ts(125))));
        // A changed Ready condition is a probe.
        let h3 = observe(Some(&h), &node(Some("False"), vec![]), None, ts(160));
        assert_eq!(h3.probe, ts(160));
    }

    #[test]
    fn a_node_silent_past_the_grace_period_goes_unknown() {
        let n = node(Some("True"), vec![]);
        let h = observe(None, &n, Some(&lease(100)), ts(100));
        assert_eq!(stale_conditions(&n, &h, GRACE, ts(140)), None);
        let c = stale_conditions(&n, &h, GRACE, ts(141)).expect("stale");
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time, Some(Time(ts(141))));
        // The heartbeat stays the kubelet's.
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(1))));
        let never = c.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(
            (never.status.as_str(), never.reason.as_deref()),
            ("Unknown", Some("NodeStatusNeverUpdated"))
        );
        assert_eq!(c.len(), 4);
        // Already Unknown: nothing to write.
        let mut unknown = n.clone();
        unknown.status.as_mut().unwrap().conditions = Some(c);
        assert_eq!(stale_conditions(&unknown, &h, GRACE, ts(200)), None);
    }

    #[test]
    fn a_node_that_never_reported_gets_the_startup_grace() {
        let startup = Duration::from_secs(60);
        assert_eq!(grace_period(&node(None, vec![]), GRACE, startup), startup);
        assert_eq!(
            grace_period(&node(Some("True"), vec![]), GRACE, startup),
            GRACE
        );
    }

    #[test]
    fn noschedule_taints_follow_the_ready_condition() {
        let other = taint("dedicated", "NoSchedule");
        let ne = Taint {
            time_added: Some(Time(ts(3))),
            ..taint(TAINT_UNREACHABLE, "NoExecute")
        };
        let unknown = node(Some("Unknown"), vec![other.clone(), ne.clone()]);
        let t = desired_taints(&unknown).expect("tainted");
        // The NoExecute taint is not this pass's: it stays as it is.
        assert_eq!(
            t,
            vec![
                other.clone(),
                ne.clone(),
                taint(TAINT_UNREACHABLE, "NoSchedule")
            ]
        );
        let tainted = node(Some("Unknown"), t);
        assert_eq!(desired_taints(&tainted), None);
        // Ready=False swaps the NoSchedule unreachable for not-ready.
        let mut not_ready = tainted.clone();
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let t = desired_taints(&not_ready).unwrap();
        let keys: Vec<_> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
                (TAINT_NOT_READY, "NoSchedule"),
            ]
        );
        // Ready again: the NoSchedule condition taint goes.
        let mut ready = tainted;
        ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert_eq!(desired_taints(&ready), Some(vec![other, ne]));
        assert_eq!(desired_taints(&node(Some("True"), vec![])), None);
    }

    #[test]
    fn no_execute_taints_swap_with_their_time() {
        let n = node(Some("Unknown"), vec![taint(TAINT_NOT_READY, "NoExecute")]);
        let t =
            swap_no_execute_taints(&n, Some(TAINT_UNREACHABLE), &[TAINT_NOT_READY], ts(7)).unwrap();
        assert_eq!(
            t,
            vec![Taint {
                time_added: Some(Time(ts(7))),
                ..taint(TAINT_UNREACHABLE, "NoExecute")
            }]
        );
        let tainted = node(Some("Unknown"), t.clone());
        assert_eq!(
            swap_no_execute_taints(&tainted, Some(TAINT_UNREACHABLE), &[TAINT_NOT_READY], ts(9)),
            None,
            "already there: its time stays"
        );
        // Reachable: both go, a NoSchedule one of the same key stays.
        let mut both = t;
        both.push(taint(TAINT_UNREACHABLE, "NoSchedule"));
        let n = node(Some("True"), both);
        assert_eq!(
            swap_no_execute_taints(&n, None, &[TAINT_UNREACHABLE, TAINT_NOT_READY], ts(9)),
            Some(vec![taint(TAINT_UNREACHABLE, "NoSchedule")])
        );
    }

    fn zoned(name: &str, zone: &str, ready: &str, taints: Vec<Taint>) -> Node {
        let mut n = node(Some(ready), taints);
        n.metadata.name = Some(name.into());
        n.metadata.uid = Some(format!("uid-{name}"));
        if !zone.is_empty() {
            n.metadata.labels = Some(
                [
                    (LABEL_ZONE.to_string(), zone.to_string()),
                    (LABEL_REGION.to_string(), "r".to_string()),
                ]
                .into(),
            );
        }
        n
    }

    #[test]
    fn zone_keys_as_get_zone_key() {
        assert_eq!(zone_key(&node(None, vec![])), "");
        assert_eq!(zone_key(&zoned("n", "a", "True", vec![])), "r:\0:a");
        // The beta labels win.
        let mut n = zoned("n", "a", "True", vec![]);
        n.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_ZONE_BETA.into(), "b".into());
        assert_eq!(zone_key(&n), "r:\0:b");
        // A region alone is a zone key too.
        n.metadata.labels = Some([(LABEL_REGION.to_string(), "r".to_string())].into());
        assert_eq!(zone_key(&n), "r:\0:");
        assert!(!excluded_from_disruption(&n));
        n.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_EXCLUDE_DISRUPTION.into(), String::new());
        assert!(excluded_from_disruption(&n));
    }

    #[test]
    fn zone_state_table() {
        let t = 0.55;
        let s = |ready: &[Option<&str>]| compute_zone_state(ready, t);
        let (y, n, u) = (Some("True"), Some("False"), Some("Unknown"));
        assert_eq!(s(&[y, y, y]), (0, ZoneState::Normal));
        // Every node not ready, even one: full disruption; no Ready condition counts.
        assert_eq!(s(&[n]), (1, ZoneState::FullDisruption));
        assert_eq!(s(&[None, u]), (2, ZoneState::FullDisruption));
        // Two not ready out of three is 67 %, but partial disruption needs three.
        assert_eq!(s(&[n, u, y]), (2, ZoneState::Normal));
        // Three of five is 60 % >= 55 %: partial.
        assert_eq!(s(&[n, u, None, y, y]), (3, ZoneState::PartialDisruption));
        // Three of six is 50 % < 55 %: normal.
        assert_eq!(s(&[n, u, u, y, y, y]), (3, ZoneState::Normal));
        // An empty zone is normal.
        assert_eq!(s(&[]), (0, ZoneState::Normal));
    }

    #[test]
    fn rates_follow_the_zone_state_and_size() {
        let r = EvictionRates::default();
        assert_eq!(r.zone_qps(ZoneState::Normal, 10), Some(0.1));
        // A small zone stops tainting in partial disruption, a large one slows down.
        assert_eq!(r.zone_qps(ZoneState::PartialDisruption, 50), Some(0.0));
        assert_eq!(r.zone_qps(ZoneState::PartialDisruption, 51), Some(0.01));
        // A fully disrupted zone (while another is not) taints at the normal rate.
        assert_eq!(r.zone_qps(ZoneState::FullDisruption, 3), Some(0.1));
        assert_eq!(r.zone_qps(ZoneState::Initial, 3), None);
    }

    #[test]
    fn token_bucket_of_burst_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.5, t0);
        assert!(b.try_accept(t0), "starts full");
        assert!(!b.try_accept(t0));
        assert!(!b.try_accept(t0 + Duration::from_millis(1999)));
        assert!(b.try_accept(t0 + Duration::from_secs(2)));
        // Tokens do not pile up beyond one.
        assert!(b.try_accept(t0 + Duration::from_secs(60)));
        assert!(!b.try_accept(t0 + Duration::from_secs(60)));
        let mut never = TokenBucket::new(0.0, t0);
        assert!(!never.try_accept(t0 + Duration::from_secs(1000)));
    }

    #[test]
    fn tainting_order_and_rate_over_simulated_time() {
        let t0 = Instant::now();
        let mut tainter = NoExecuteTainter::new(EvictionRates::default());
        let names = ["n3", "n1", "n2", "n0"];
        let mut nodes: Vec<Node> = names
            .iter()
            .map(|n| zoned(n, "", "Unknown", vec![]))
            .collect();
        nodes.push(zoned("ok", "", "True", vec![]));
        for (i, n) in nodes.iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            let observed = ready_status(n).unwrap();
            let want = if observed == "True" {
                TaintAction::MarkReachable
            } else {
                TaintAction::Nothing
            };
            assert_eq!(tainter.process_node(n, observed, at), want);
        }
        assert_eq!(tainter.queue("").unwrap().len(), 4);
        // Every 100 ms for a minute: one node per 10 s, in the order they were queued.
        let mut tainted = Vec::new();
        for tick in 0..600u64 {
            let now = t0 + Duration::from_millis(10 + tick * 100);
            tainter.tainting_pass(now, |zone, v| {
                assert_eq!(zone, "");
                tainted.push((v.value.clone(), now.duration_since(t0).as_secs()));
                Ok(())
            });
        }
        assert_eq!(
            tainted,
            vec![
                ("n3".to_string(), 0),
                ("n1".to_string(), 10),
                ("n2".to_string(), 20),
                ("n0".to_string(), 30)
            ]
        );
        // Tainted nodes stay in the set: queued again only once reachable and back.
        let n1 = zoned(
            "n1",
            "",
            "Unknown",
            vec![taint(TAINT_UNREACHABLE, "NoExecute")],
        );
        assert_eq!(
            tainter.process_node(&n1, "Unknown", t0 + Duration::from_secs(61)),
            TaintAction::Nothing
        );
        assert!(tainter.queue("").unwrap().is_empty());
        // An untainted node not ready is queued afresh (its taint write may have failed).
        let n2 = zoned("n2", "", "Unknown", vec![]);
        tainter.process_node(&n2, "Unknown", t0 + Duration::from_secs(62));
        assert_eq!(tainter.queue("").unwrap().len(), 1);
        // Ready again: it leaves the queue.
        assert_eq!(
            tainter.process_node(&n2, "True", t0 + Duration::from_secs(63)),
            TaintAction::MarkReachable
        );
        assert!(tainter.queue("").unwrap().is_empty());
        // The opposite taint swaps at once, without the queue.
        let nr = zoned(
            "n0",
            "",
            "Unknown",
            vec![taint(TAINT_NOT_READY, "NoExecute")],
        );
        assert_eq!(
            tainter.process_node(&nr, "Unknown", t0 + Duration::from_secs(64)),
            TaintAction::Swap(TAINT_UNREACHABLE, TAINT_NOT_READY)
        );
    }

    #[test]
    fn a_node_not_yet_lookable_is_retried() {
        let t0 = Instant::now();
        let mut q = RateLimitedTimedQueue::new(100.0, t0);
        assert!(q.add("a", "u", t0));
        assert!(!q.add("a", "u", t0), "once");
        let mut calls = 0;
        q.try_pass(t0, |_| {
            calls += 1;
            Err(Duration::from_millis(50))
        });
        assert_eq!((calls, q.len()), (1, 1));
        // Not due before 50 ms.
        q.try_pass(t0 + Duration::from_millis(40), |_| panic!("not due"));
        q.try_pass(t0 + Duration::from_millis(60), |_| Ok(()));
        assert!(q.is_empty());
        assert!(!q.add("a", "u", t0), "done: still in the set");
        assert!(q.remove("a"));
        assert!(q.add("a", "u", t0));
    }

    fn conditions<'a>(
        zones: &[(&str, &[Option<&'a str>])],
    ) -> BTreeMap<String, Vec<Option<&'a str>>> {
        zones
            .iter()
            .map(|(z, c)| (z.to_string(), c.to_vec()))
            .collect()
    }

    #[test]
    fn disruption_mode_transitions() {
        let t0 = Instant::now();
        let mut tainter = NoExecuteTainter::new(EvictionRates::default());
        let (y, u) = (Some("True"), Some("Unknown"));
        let qps = |t: &NoExecuteTainter, z: &str| t.queue(z).unwrap().qps();
        // First sight: both zones Normal.
        let (d, views) =
            tainter.handle_disruption(&conditions(&[("a", &[y, y, y]), ("b", &[y, y])]), t0);
        assert_eq!(
            d,
            Disruption::Zones(vec![
                ("a".into(), ZoneState::Normal),
                ("b".into(), ZoneState::Normal)
            ])
        );
        assert_eq!(views["a"].health(), 100.0);
        // Zone a loses every node: FullDisruption at the healthy rate (b still works).
        let (d, views) =
            tainter.handle_disruption(&conditions(&[("a", &[u, u, u]), ("b", &[y, y])]), t0);
        assert_eq!(
            d,
            Disruption::Zones(vec![("a".into(), ZoneState::FullDisruption)])
        );
        assert_eq!(views["a"].health(), 0.0);
        assert_eq!(qps(&tainter, "a"), 0.1);
        // Every zone down: master disruption mode, no tainting anywhere.
        let (d, _) =
            tainter.handle_disruption(&conditions(&[("a", &[u, u, u]), ("b", &[u, None])]), t0);
        assert_eq!(d, Disruption::Entered);
        assert_eq!((qps(&tainter, "a"), qps(&tainter, "b")), (0.0, 0.0));
        // Staying there changes nothing.
        let (d, _) =
            tainter.handle_disruption(&conditions(&[("a", &[u, u, u]), ("b", &[u, u])]), t0);
        assert_eq!(d, Disruption::Zones(vec![]));
        assert_eq!(tainter.state("b"), Some(ZoneState::FullDisruption));
        // One node back in b: disruption mode left, each zone's rate from its state.
        let (d, _) =
            tainter.handle_disruption(&conditions(&[("a", &[u, u, u]), ("b", &[y, u])]), t0);
        assert_eq!(d, Disruption::Exited);
        assert_eq!(tainter.state("a"), Some(ZoneState::FullDisruption));
        assert_eq!(tainter.state("b"), Some(ZoneState::Normal));
        assert_eq!((qps(&tainter, "a"), qps(&tainter, "b")), (0.1, 0.1));
        // A small zone in partial disruption stops tainting.
        let (d, _) = tainter.handle_disruption(
            &conditions(&[("a", &[u, u, u]), ("b", &[y, u, u, u, None])]),
            t0,
        );
        assert_eq!(
            d,
            Disruption::Zones(vec![("b".into(), ZoneState::PartialDisruption)])
        );
        assert_eq!(qps(&tainter, "b"), 0.0);
        // A zone without nodes is dropped.
        tainter.handle_disruption(&conditions(&[("b", &[y])]), t0);
        assert_eq!(tainter.zones(), vec!["b".to_string()]);
    }

    #[test]
    fn swapping_the_rate_keeps_an_empty_bucket_empty() {
        let t0 = Instant::now();
        let mut q = RateLimitedTimedQueue::new(0.1, t0);
        q.add("a", "u", t0);
        q.add("b", "u", t0);
        let mut done = Vec::new();
        q.try_pass(t0, |v| {
            done.push(v.value.clone());
            Ok(())
        });
        assert_eq!(done, vec!["a".to_string()]);
        // The bucket was empty: the new one starts empty too.
        q.swap_limiter(1.0, t0);
        q.try_pass(t0, |v| {
            done.push(v.value.clone());
            Ok(())
        });
        assert_eq!(done.len(), 1);
        q.try_pass(t0 + Duration::from_secs(1), |v| {
            done.push(v.value.clone());
            Ok(())
        });
        assert_eq!(done, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn disruption_target_as_the_taint_manager_sets_it() {
        let c = disruption_target(None, ts(5)).unwrap();
        assert_eq!(
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_deref(),
                c.message.as_deref(),
                c.last_transition_time.clone()
            ),
            (
                "DisruptionTarget",
                "True",
                Some("DeletionByTaintManager"),
                Some("Taint manager: deleting due to NoExecute taint"),
                Some(Time(ts(5)))
            )
        );
        let status = PodStatus {
            conditions: Some(vec![c.clone()]),
            ..Default::default()
        };
        assert_eq!(disruption_target(Some(&status), ts(9)), None, "set already");
        // Another True reason is replaced, keeping its transition time.
        let other = PodStatus {
            conditions: Some(vec![PodCondition {
                reason: Some("EvictionByEvictionAPI".into()),
                ..c
            }]),
            ..Default::default()
        };
        let again = disruption_target(Some(&other), ts(9)).unwrap();
        assert_eq!(again.last_transition_time, Some(Time(ts(5))));
        assert_eq!(again.reason.as_deref(), Some("DeletionByTaintManager"));
    }

    #[test]
    fn untolerated_noexecute_taints_evict_at_once() {
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute")];
        assert_eq!(pod_eviction(&[], &taints, None, ts(0)), Eviction::DeleteNow);
        let other = [toleration(TAINT_NOT_READY, Some(300))];
        assert_eq!(
            pod_eviction(&other, &taints, None, ts(0)),
            Eviction::DeleteNow
        );
        // NoSchedule taints evict nothing.
        let ns = [taint(TAINT_UNREACHABLE, "NoSchedule")];
        assert_eq!(pod_eviction(&[], &ns, None, ts(0)), Eviction::Keep);
        // A zero or negative toleration is no toleration time at all.
        let zero = [toleration(TAINT_UNREACHABLE, Some(0))];
        assert_eq!(
            pod_eviction(&zero, &taints, None, ts(0)),
            Eviction::DeleteNow
        );
    }

    #[test]
    fn tolerated_taints_evict_after_the_shortest_toleration() {
        let taints = [
            taint(TAINT_UNREACHABLE, "NoExecute"),
            taint("maintenance", "NoExecute"),
        ];
        let tol = [
            toleration(TAINT_UNREACHABLE, Some(300)),
            toleration("maintenance", Some(60)),
        ];
        let s = Scheduled {
            created: ts(10),
            fire: ts(70),
        };
        assert_eq!(
            pod_eviction(&tol, &taints, None, ts(10)),
            Eviction::Schedule(s)
        );
        assert_eq!(
            pod_eviction(&tol, &taints, Some(&s), ts(69)),
            Eviction::Keep
        );
        assert_eq!(
            pod_eviction(&tol, &taints, Some(&s), ts(70)),
            Eviction::DeleteNow
        );
        // The taints went: cancelled.
        assert_eq!(pod_eviction(&tol, &[], Some(&s), ts(50)), Eviction::Cancel);
        assert_eq!(pod_eviction(&tol, &[], None, ts(50)), Eviction::Keep);
        // Tolerated forever: never deleted.
        let forever = [Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        assert_eq!(pod_eviction(&forever, &taints, None, ts(0)), Eviction::Keep);
    }

    #[test]
    fn toleration_matching_as_kubernetes() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        assert!(tolerates(&tol("k", "Equal", "v", "NoExecute"), &t));
        assert!(tolerates(&tol("k", "", "v", ""), &t));
        assert!(!tolerates(&tol("k", "Equal", "w", "NoExecute"), &t));
        assert!(tolerates(&tol("k", "Exists", "", "NoExecute"), &t));
        assert!(tolerates(&tol("", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("k", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&tol("j", "Exists", "", "NoExecute"), &t));
        assert!(!tolerates(&tol("k", "Bogus", "v", "NoExecute"), &t));
    }
}
