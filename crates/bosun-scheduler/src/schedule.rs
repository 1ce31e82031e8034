//! One scheduling cycle: pkg/scheduler/schedule_one.go `schedulePod` — PreFilter, filters over a
//! rotating window of nodes until enough fit (`findNodesThatPassFilters` with
//! `numFeasibleNodesToFind`), scores (`prioritizeNodes`), and `selectHost`.

use crate::Error;
use crate::affinity::NodeNames;
use crate::filter::{Diagnosis, FitError, HardSpread, REASON_AFFINITY_CONFLICT, run_filters};
use crate::pod::PreparedPod;
use crate::score::{
    self, SoftSpread, WEIGHT_BALANCED_ALLOCATION, WEIGHT_NODE_AFFINITY, WEIGHT_NODE_RESOURCES_FIT,
    WEIGHT_POD_TOPOLOGY_SPREAD, WEIGHT_TAINT_TOLERATION,
};
use crate::snapshot::{NodeIdx, Snapshot};

/// `minFeasibleNodesToFind`: below this many nodes every node is checked.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// `minFeasibleNodesPercentageToFind`: the adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// `numFeasibleNodesToFind`: how many feasible nodes to find before scoring. `percentage` is
/// `percentageOfNodesToScore` (0 = adaptive: 50% minus 1% per 125 nodes, at least 5%); the
/// answer is at least 100 (or every node, when there are fewer).
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = usize::try_from(percentage.min(100)).unwrap_or(100);
    if pct == 0 {
        pct = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// A source of randomness for breaking ties between equally scored nodes. Pass a seeded one to
/// make runs reproducible.
pub trait RandomSource {
    /// A uniformly distributed 64-bit value.
    fn next_u64(&mut self) -> u64;

    /// A uniform value in `0..n` (`rand.Intn`); `n` must be positive.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// SplitMix64: a small, fast, seedable generator, enough for tie-breaking.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `selectHost`: the index of a highest score, ties broken uniformly at random (reservoir
/// sampling: the k-th tied node replaces the choice with probability 1/k). None when empty.
pub fn select_host(totals: &[i64], rng: &mut impl RandomSource) -> Option<usize> {
    let mut best = *totals.first()?;
    let mut selected = 0;
    let mut ties = 1u64;
    for (i, &score) in totals.iter().enumerate().skip(1) {
        if score > best {
            best = score;
            selected = i;
            ties = 1;
        } else if score == best {
            ties += 1;
            if rng.below(ties) == 0 {
                selected = i;
            }
        }
    }
    Some(selected)
}

/// Tunables of the scheduling algorithm (`KubeSchedulerConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// `percentageOfNodesToScore`: 0 for the adaptive default.
    pub percentage_of_nodes_to_score: u32,
}

/// Where a pod goes (`ScheduleResult`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// Nodes the filters ran on.
    pub evaluated_nodes: usize,
    /// Of those, the nodes that fit.
    pub feasible_nodes: usize,
}

/// Why a cycle placed no pod.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// `ErrNoNodesAvailable`.
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    /// No node fits: the message is Kubernetes' "0/N nodes are available: ...".
    #[error("{0}")]
    Unschedulable(FitError),
}

/// Each score plugin's normalised, unweighted score of one node (`NodePluginScores`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeScores {
    /// The node.
    pub node: String,
    /// TaintToleration.
    pub taint_toleration: i64,
    /// NodeAffinity.
    pub node_affinity: i64,
    /// NodeResourcesFit (LeastAllocated).
    pub node_resources_fit: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced_allocation: i64,
    /// PodTopologySpread.
    pub pod_topology_spread: i64,
    /// The weighted sum.
    pub total: i64,
}

/// Buffers reused from one cycle to the next so that a cycle allocates per pod, not per node.
#[derive(Debug, Default)]
struct Scratch {
    candidates: Vec<NodeIdx>,
    feasible: Vec<NodeIdx>,
    taint: Vec<i64>,
    affinity: Vec<i64>,
    fit: Vec<i64>,
    balanced: Vec<i64>,
    spread: Vec<i64>,
    totals: Vec<i64>,
}

/// The scheduling algorithm with its state between cycles: where the next node walk starts.
#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    next_start_node_index: usize,
    scratch: Scratch,
}

impl Scheduler {
    /// A scheduler with `config`.
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            ..Default::default()
        }
    }

    /// Where the next cycle's node walk starts (`nextStartNodeIndex`).
    pub fn next_start_node_index(&self) -> usize {
        self.next_start_node_index
    }

    /// Schedules one pod against the snapshot: the node it should be bound to, or why none
    /// fits. The caller assumes the pod on that node ([`Snapshot::assume`]) before binding.
    pub fn schedule_one(
        &mut self,
        snapshot: &Snapshot,
        pod: &PreparedPod,
        rng: &mut impl RandomSource,
    ) -> Result<ScheduleResult, ScheduleError> {
        let num_all = snapshot.num_nodes();
        if num_all == 0 {
            return Err(ScheduleError::NoNodesAvailable);
        }
        // PreFilter.
        if pod.node_names == NodeNames::Conflict {
            return Err(ScheduleError::Unschedulable(FitError {
                num_all_nodes: num_all,
                pre_filter_message: Some(REASON_AFFINITY_CONFLICT.to_owned()),
                preemption_may_help: 0,
                reasons: Vec::new(),
                unschedulable_plugins: vec!["NodeAffinity"],
            }));
        }
        let spread = HardSpread::compute(snapshot, pod);

        // A node nominated by an earlier preemption is tried first.
        if let Some(nominated) = pod.nominated_node_name.as_deref()
            && let Some(idx) = snapshot.node_index(nominated)
            && snapshot.slot(idx).info.is_some()
            && run_filters(snapshot, idx, pod, &spread).is_ok()
        {
            return Ok(ScheduleResult {
                node: nominated.to_owned(),
                evaluated_nodes: 1,
                feasible_nodes: 1,
            });
        }

        let scratch = &mut self.scratch;
        scratch.candidates.clear();
        let by_name = match &pod.node_names {
            NodeNames::Only(names) => {
                scratch.candidates.extend(
                    snapshot
                        .order()
                        .iter()
                        .copied()
                        .filter(|&i| names.contains(&*snapshot.slot(i).name)),
                );
                true
            }
            _ => {
                scratch.candidates.extend_from_slice(snapshot.order());
                false
            }
        };

        // Filter, walking from where the previous cycle stopped.
        let nodes = &scratch.candidates;
        let to_find =
            num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, nodes.len());
        let mut diagnosis = Diagnosis::default();
        scratch.feasible.clear();
        for i in 0..nodes.len() {
            if scratch.feasible.len() >= to_find {
                break;
            }
            let idx = nodes[(self.next_start_node_index + i) % nodes.len()];
            match run_filters(snapshot, idx, pod, &spread) {
                Ok(()) => scratch.feasible.push(idx),
                Err(r) => diagnosis.record(r),
            }
        }
        let processed = scratch.feasible.len() + diagnosis.rejected;
        self.next_start_node_index = (self.next_start_node_index + processed) % num_all;
        let evaluated_nodes = processed;

        match scratch.feasible.len() {
            0 => Err(ScheduleError::Unschedulable(
                diagnosis.into_fit_error(pod, num_all, by_name),
            )),
            1 => Ok(ScheduleResult {
                node: snapshot.slot(scratch.feasible[0]).name.to_string(),
                evaluated_nodes,
                feasible_nodes: 1,
            }),
            n => {
                prioritize(snapshot, pod, scratch);
                let chosen = select_host(&scratch.totals, rng).unwrap_or(0);
                Ok(ScheduleResult {
                    node: snapshot.slot(scratch.feasible[chosen]).name.to_string(),
                    evaluated_nodes,
                    feasible_nodes: n,
                })
            }
        }
    }

    /// Runs every filter on one node, for callers that explain a decision and for tests:
    /// Ok, or the reasons Kubernetes would report for it.
    pub fn check_node(snapshot: &Snapshot, pod: &PreparedPod, node: &str) -> Result<(), Error> {
        let idx = snapshot
            .node_index(node)
            .filter(|&i| snapshot.slot(i).info.is_some())
            .ok_or_else(|| Error::NodeNotFound(node.to_owned()))?;
        if let NodeNames::Only(names) = &pod.node_names
            && !names.contains(node)
        {
            return Err(Error::Rejected(vec![
                "node(s) didn't satisfy plugin(s) [NodeAffinity]".to_owned(),
            ]));
        }
        let spread = HardSpread::compute(snapshot, pod);
        run_filters(snapshot, idx, pod, &spread).map_err(|r| {
            let mut d = Diagnosis::default();
            d.record(r);
            Error::Rejected(
                d.into_fit_error(pod, 1, false)
                    .reasons
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect(),
            )
        })
    }

    /// Scores the named nodes for the pod as the score phase would (the names must be nodes
    /// of the snapshot; others are left out).
    pub fn score_nodes(
        &mut self,
        snapshot: &Snapshot,
        pod: &PreparedPod,
        nodes: &[&str],
    ) -> Vec<NodeScores> {
        let scratch = &mut self.scratch;
        scratch.feasible.clear();
        scratch.feasible.extend(
            nodes
                .iter()
                .filter_map(|n| snapshot.node_index(n))
                .filter(|&i| snapshot.slot(i).info.is_some()),
        );
        prioritize(snapshot, pod, scratch);
        (0..scratch.feasible.len())
            .map(|i| NodeScores {
                node: snapshot.slot(scratch.feasible[i]).name.to_string(),
                taint_toleration: scratch.taint[i],
                node_affinity: scratch.affinity[i],
                node_resources_fit: scratch.fit[i],
                balanced_allocation: scratch.balanced[i],
                pod_topology_spread: scratch.spread[i],
                total: scratch.totals[i],
            })
            .collect()
    }
}

/// `prioritizeNodes`: every score plugin over the feasible nodes, normalised and weighted.
fn prioritize(snapshot: &Snapshot, pod: &PreparedPod, s: &mut Scratch) {
    let n = s.feasible.len();
    for v in [
        &mut s.taint,
        &mut s.affinity,
        &mut s.fit,
        &mut s.balanced,
        &mut s.spread,
        &mut s.totals,
    ] {
        v.clear();
        v.resize(n, 0);
    }
    let spread =
        (!pod.soft_spread.is_empty()).then(|| SoftSpread::compute(snapshot, pod, &s.feasible));
    let balanced = !score::balanced_skipped(pod);
    for (i, &idx) in s.feasible.iter().enumerate() {
        let slot = snapshot.slot(idx);
        let Some(info) = slot.info.as_ref() else {
            continue;
        };
        s.taint[i] = score::taint_raw(pod, info);
        if let Some(preferred) = &pod.preferred {
            s.affinity[i] = preferred.score(&slot.name, &info.labels);
        }
        s.fit[i] = score::fit_score(pod, slot, info);
        if balanced {
            s.balanced[i] = score::balanced_score(pod, slot, info);
        }
        if let Some(spread) = &spread {
            s.spread[i] = spread.raw_score(pod, i, idx, info);
        }
    }
    score::default_normalize(&mut s.taint, true);
    if pod.preferred.is_some() {
        score::default_normalize(&mut s.affinity, false);
    }
    if let Some(spread) = &spread {
        score::normalize_spread(&mut s.spread, &spread.ignored);
    }
    for i in 0..n {
        s.totals[i] = s.taint[i] * WEIGHT_TAINT_TOLERATION
            + s.affinity[i] * WEIGHT_NODE_AFFINITY
            + s.fit[i] * WEIGHT_NODE_RESOURCES_FIT
            + s.balanced[i] * WEIGHT_BALANCED_ALLOCATION
            + s.spread[i] * WEIGHT_POD_TOPOLOGY_SPREAD;
    }
}
