//! The score plugins and their normalisation, with the default profile's weights.
//!
//! | plugin | weight | Kubernetes source |
//! |---|---|---|
//! | TaintToleration (PreferNoSchedule taints, reversed) | 3 | plugins/tainttoleration |
//! | NodeAffinity (preferred terms) | 2 | plugins/nodeaffinity |
//! | PodTopologySpread (ScheduleAnyway, or system-default spreading of the pod's owner) | 2 | plugins/podtopologyspread/scoring.go |
//! | NodeResourcesFit (LeastAllocated: cpu 1, memory 1) | 1 | plugins/noderesources/least_allocated.go |
//! | NodeResourcesBalancedAllocation (cpu, memory) | 1 | plugins/noderesources/balanced_allocation.go |
//!
//! Each plugin scores a node 0..=100 (after `NormalizeScore`); the total is the weighted sum
//! (`RunScorePlugins`). A plugin whose PreScore skips the pod scores 0 everywhere.

use std::collections::HashMap;

use crate::node::NodeInfo;
use crate::pod::PreparedPod;
use crate::snapshot::{NodeIdx, NodeSlot, Snapshot};
use crate::taints::count_intolerable_prefer_no_schedule;

/// `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;
/// Weight of TaintToleration in the default profile.
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
/// Weight of NodeAffinity in the default profile.
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
/// Weight of PodTopologySpread in the default profile.
pub const WEIGHT_POD_TOPOLOGY_SPREAD: i64 = 2;
/// Weight of NodeResourcesFit in the default profile.
pub const WEIGHT_NODE_RESOURCES_FIT: i64 = 1;
/// Weight of NodeResourcesBalancedAllocation in the default profile.
pub const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

/// `leastRequestedScore`: the unused share of one resource, 0..=100.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `leastResourceScorer` over (requested, allocatable, weight) triples; resources the node
/// does not have are left out.
pub fn least_allocated_score(resources: &[(i64, i64, i64)]) -> i64 {
    let (mut score, mut weights) = (0, 0);
    for &(requested, allocatable, weight) in resources {
        if allocatable == 0 {
            continue;
        }
        score += least_requested_score(requested, allocatable) * weight;
        weights += weight;
    }
    if weights == 0 { 0 } else { score / weights }
}

/// `balancedResourceScorer`: 100 times one minus the standard deviation of the requested
/// fractions (each capped at 1) of the resources the node has.
pub fn balanced_allocation_score(resources: &[(i64, i64)]) -> i64 {
    let mut fractions = [0f64; 8];
    let mut n = 0usize;
    let mut total = 0f64;
    for &(requested, allocatable) in resources {
        if allocatable == 0 || n == fractions.len() {
            continue;
        }
        let f = (requested as f64 / allocatable as f64).min(1.0);
        fractions[n] = f;
        total += f;
        n += 1;
    }
    let std = match n {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        _ => {
            let mean = total / n as f64;
            let sum: f64 = fractions[..n].iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// `helper.DefaultNormalizeScore`: scales scores to 0..=100 by the highest; `reverse` turns
/// high raw scores into low ones. All zeros stay zero, or become 100 when reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// PodTopologySpread's `NormalizeScore`: fewer matching pods score higher; ignored nodes
/// (missing a topology key) score 0.
pub fn normalize_spread(scores: &mut [i64], ignored: &[bool]) {
    let mut min = i64::MAX;
    let mut max = 0;
    for (s, &ign) in scores.iter().zip(ignored) {
        if ign {
            continue;
        }
        min = min.min(*s);
        max = max.max(*s);
    }
    for (s, &ign) in scores.iter_mut().zip(ignored) {
        *s = if ign {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

/// `topologyNormalizingWeight`: ln(size + 2).
fn topology_normalizing_weight(size: usize) -> f64 {
    ((size + 2) as f64).ln()
}

/// PodTopologySpread's PreScore state for the feasible nodes.
#[derive(Debug, Default)]
pub(crate) struct SoftSpread<'a> {
    /// Per feasible node: lacks a topology key (scored 0).
    pub(crate) ignored: Vec<bool>,
    /// Per constraint: matching pods per topology value (non-hostname constraints).
    domain_counts: Vec<HashMap<&'a str, i64>>,
    /// Per constraint: matching pods per node (hostname constraints).
    node_counts: Vec<HashMap<NodeIdx, i64>>,
    weights: Vec<f64>,
}

impl<'a> SoftSpread<'a> {
    /// `initPreScoreState` + `PreScore`. Counting goes through the label index rather than
    /// every node's pods; the counts are the same.
    pub(crate) fn compute(snapshot: &'a Snapshot, pod: &PreparedPod, feasible: &[NodeIdx]) -> Self {
        let constraints = &pod.soft_spread;
        let require_all = pod.soft_spread_require_all;
        let has_all =
            |info: &NodeInfo| constraints.iter().all(|c| info.labels.has(&c.topology_key));
        let mut s = SoftSpread {
            ignored: Vec::with_capacity(feasible.len()),
            domain_counts: vec![HashMap::new(); constraints.len()],
            node_counts: vec![HashMap::new(); constraints.len()],
            weights: Vec::with_capacity(constraints.len()),
        };
        let mut sizes = vec![0usize; constraints.len()];
        for &idx in feasible {
            let Some(info) = snapshot.slot(idx).info.as_ref() else {
                s.ignored.push(true);
                continue;
            };
            if require_all && !has_all(info) {
                s.ignored.push(true);
                continue;
            }
            s.ignored.push(false);
            for (i, c) in constraints.iter().enumerate() {
                if c.is_hostname() {
                    continue;
                }
                let value = info.labels.get(&c.topology_key).unwrap_or_default();
                if let std::collections::hash_map::Entry::Vacant(e) =
                    s.domain_counts[i].entry(value)
                {
                    e.insert(0);
                    sizes[i] += 1;
                }
            }
        }
        let scored = s.ignored.iter().filter(|i| !**i).count();
        for (i, c) in constraints.iter().enumerate() {
            let size = if c.is_hostname() { scored } else { sizes[i] };
            s.weights.push(topology_normalizing_weight(size));
        }
        for (i, c) in constraints.iter().enumerate() {
            let (domains, nodes) = (&mut s.domain_counts[i], &mut s.node_counts[i]);
            snapshot.for_each_matching_pod(&pod.namespace, &c.selector, |p| {
                if c.is_hostname() {
                    *nodes.entry(p.node).or_insert(0) += 1;
                    return;
                }
                let slot: &NodeSlot = snapshot.slot(p.node);
                let Some(info) = slot.info.as_ref() else {
                    return;
                };
                if (require_all && !has_all(info)) || !pod.node_included(c, &slot.name, info) {
                    return;
                }
                let value = info.labels.get(&c.topology_key).unwrap_or_default();
                if let Some(n) = domains.get_mut(value) {
                    *n += 1;
                }
            });
        }
        s
    }

    /// `Score`: the raw (pre-normalisation) score of the `i`-th feasible node.
    pub(crate) fn raw_score(
        &self,
        pod: &PreparedPod,
        i: usize,
        idx: NodeIdx,
        info: &NodeInfo,
    ) -> i64 {
        if self.ignored[i] {
            return 0;
        }
        let mut score = 0.0;
        for (c_i, c) in pod.soft_spread.iter().enumerate() {
            let Some(value) = info.labels.get(&c.topology_key) else {
                continue;
            };
            let count = if c.is_hostname() {
                self.node_counts[c_i].get(&idx).copied().unwrap_or(0)
            } else {
                self.domain_counts[c_i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * self.weights[c_i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }
}

/// TaintToleration's raw score: intolerable PreferNoSchedule taints.
pub(crate) fn taint_raw(pod: &PreparedPod, info: &NodeInfo) -> i64 {
    count_intolerable_prefer_no_schedule(&info.taints, &pod.prefer_no_schedule_tolerations)
}

/// NodeResourcesFit's LeastAllocated score (cpu and memory, weight 1 each), from the node's
/// `NonZeroRequested` plus the pod's requests with scoring defaults.
pub(crate) fn fit_score(pod: &PreparedPod, slot: &NodeSlot, info: &NodeInfo) -> i64 {
    least_allocated_score(&[
        (
            slot.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            info.allocatable.milli_cpu,
            1,
        ),
        (
            slot.non_zero_memory + pod.requests.non_zero_memory,
            info.allocatable.memory,
            1,
        ),
    ])
}

/// NodeResourcesBalancedAllocation's score from the node's `Requested` plus the pod's real
/// requests.
pub(crate) fn balanced_score(pod: &PreparedPod, slot: &NodeSlot, info: &NodeInfo) -> i64 {
    balanced_allocation_score(&[
        (
            slot.requested.milli_cpu + pod.requests.requests.milli_cpu,
            info.allocatable.milli_cpu,
        ),
        (
            slot.requested.memory + pod.requests.requests.memory,
            info.allocatable.memory,
        ),
    ])
}

/// BalancedAllocation's PreScore skips best-effort pods (no CPU or memory requests), so that
/// they do not pile onto one node (kubernetes#129138).
pub(crate) fn balanced_skipped(pod: &PreparedPod) -> bool {
    pod.requests.requests.milli_cpu == 0 && pod.requests.requests.memory == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_matches_kubernetes() {
        // From helper/normalize_score_test.go.
        let mut s = vec![10, 20, 30, 40];
        default_normalize(&mut s, false);
        assert_eq!(s, [25, 50, 75, 100]);
        let mut s = vec![10, 20, 30, 40];
        default_normalize(&mut s, true);
        assert_eq!(s, [75, 50, 25, 0]);
        let mut s = vec![0, 0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100, 100]);
        let mut s = vec![0, 0, 0];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 0, 0]);
        let mut s = vec![1000, 1, 1, 1];
        default_normalize(&mut s, false);
        assert_eq!(s, [100, 0, 0, 0]);
    }

    #[test]
    fn spread_normalisation() {
        let mut s = vec![0, 2, 4, 7];
        normalize_spread(&mut s, &[false, false, false, true]);
        assert_eq!(s, [100, 50, 0, 0]);
        let mut s = vec![0, 0];
        normalize_spread(&mut s, &[false, false]);
        assert_eq!(s, [100, 100]);
    }
}
