//! The filter plugins, run per node in Kubernetes' default order (`RunFilterPlugins` stops at
//! the first plugin that rejects a node), and the unschedulable message built from their
//! reasons (`FitError.Error` of pkg/scheduler/framework/types.go).
//!
//! | plugin | Kubernetes source | reason |
//! |---|---|---|
//! | NodeUnschedulable | plugins/nodeunschedulable | node(s) were unschedulable |
//! | NodeName | plugins/nodename | node(s) didn't match the requested node name |
//! | TaintToleration | plugins/tainttoleration | node(s) had untolerated taint(s) |
//! | NodeAffinity | plugins/nodeaffinity | node(s) didn't match Pod's node affinity/selector |
//! | NodePorts | plugins/nodeports | node(s) didn't have free ports for the requested pod ports |
//! | NodeResourcesFit | plugins/noderesources/fit.go `fitsRequest` | Too many pods, Insufficient cpu, ... |
//! | PodTopologySpread | plugins/podtopologyspread/filtering.go | node(s) didn't match pod topology spread constraints |
//!
//! The taint reason is the one Kubernetes gives since it stopped naming the taint (#134740,
//! backported to its supported releases): taint values can be private.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::pod::PreparedPod;
use crate::snapshot::{NodeIdx, Snapshot};
use crate::taints::has_untolerated_blocking_taint;

const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
const REASON_TAINT: &str = "node(s) had untolerated taint(s)";
const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
const REASON_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
/// NodeAffinity's PreFilter when the required terms name disjoint nodes.
pub(crate) const REASON_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
/// The status of nodes NodeAffinity's PreFilter ruled out by name.
const REASON_PREFILTER_NODE_NAMES: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

/// Why a node was rejected: the first failing plugin's status. `Fit` carries a bit set of the
/// insufficient resources: bit 0 pods, 1 cpu, 2 memory, 3 ephemeral storage, 4 + i the pod's
/// i-th extended resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    Unschedulable,
    NodeName,
    Taint,
    Affinity,
    Ports,
    Fit(u64),
    SpreadLabel,
    Spread,
}

impl Rejection {
    fn plugin(self) -> &'static str {
        match self {
            Rejection::Unschedulable => "NodeUnschedulable",
            Rejection::NodeName => "NodeName",
            Rejection::Taint => "TaintToleration",
            Rejection::Affinity => "NodeAffinity",
            Rejection::Ports => "NodePorts",
            Rejection::Fit(_) => "NodeResourcesFit",
            Rejection::SpreadLabel | Rejection::Spread => "PodTopologySpread",
        }
    }
}

/// PodTopologySpread's PreFilter state for DoNotSchedule constraints: per constraint, the
/// matching pods per topology value over every eligible node, and the global minimum.
#[derive(Debug, Default)]
pub(crate) struct HardSpread<'a> {
    counts: Vec<HashMap<&'a str, i64>>,
    min_match: Vec<i64>,
}

impl<'a> HardSpread<'a> {
    /// `calPreFilterState`.
    pub(crate) fn compute(snapshot: &'a Snapshot, pod: &PreparedPod) -> HardSpread<'a> {
        let constraints = &pod.hard_spread;
        if constraints.is_empty() {
            return HardSpread::default();
        }
        let mut counts: Vec<HashMap<&'a str, i64>> = vec![HashMap::new(); constraints.len()];
        let eligible = |idx: NodeIdx| {
            let slot = snapshot.slot(idx);
            let info = slot.info.as_ref()?;
            constraints
                .iter()
                .all(|c| info.labels.has(&c.topology_key))
                .then_some((slot, info))
        };
        for &idx in snapshot.order() {
            let Some((slot, info)) = eligible(idx) else {
                continue;
            };
            for (i, c) in constraints.iter().enumerate() {
                if pod.node_included(c, &slot.name, info)
                    && let Some(v) = info.labels.get(&c.topology_key)
                {
                    counts[i].entry(v).or_insert(0);
                }
            }
        }
        for (i, c) in constraints.iter().enumerate() {
            let counts_i = &mut counts[i];
            snapshot.for_each_matching_pod(&pod.namespace, &c.selector, |p| {
                let Some((slot, info)) = eligible(p.node) else {
                    return;
                };
                if !pod.node_included(c, &slot.name, info) {
                    return;
                }
                if let Some(v) = info.labels.get(&c.topology_key)
                    && let Some(n) = counts_i.get_mut(v)
                {
                    *n += 1;
                }
            });
        }
        let min_match = constraints
            .iter()
            .zip(&counts)
            .map(|(c, counts)| {
                let domains = i64::try_from(counts.len()).unwrap_or(i64::MAX);
                if domains < c.min_domains {
                    0
                } else {
                    counts
                        .values()
                        .copied()
                        .min()
                        .unwrap_or(i64::from(i32::MAX))
                }
            })
            .collect();
        HardSpread { counts, min_match }
    }
}

/// Runs the filters on one node; the first rejection wins.
pub(crate) fn run_filters(
    snapshot: &Snapshot,
    idx: NodeIdx,
    pod: &PreparedPod,
    spread: &HardSpread<'_>,
) -> Result<(), Rejection> {
    let slot = snapshot.slot(idx);
    // The node list holds only nodes the cache has seen.
    let Some(info) = slot.info.as_ref() else {
        return Err(Rejection::Unschedulable);
    };
    if info.unschedulable && !pod.tolerates_unschedulable {
        return Err(Rejection::Unschedulable);
    }
    if pod.node_name.as_deref().is_some_and(|n| n != &*slot.name) {
        return Err(Rejection::NodeName);
    }
    if has_untolerated_blocking_taint(&info.taints, &pod.tolerations) {
        return Err(Rejection::Taint);
    }
    if !pod.required.is_empty() && !pod.required.matches(&slot.name, &info.labels) {
        return Err(Rejection::Affinity);
    }
    if pod.host_ports.iter().any(|p| slot.port_conflicts(p)) {
        return Err(Rejection::Ports);
    }
    let fit = insufficient_resources(snapshot, idx, pod);
    if fit != 0 {
        return Err(Rejection::Fit(fit));
    }
    for (i, c) in pod.hard_spread.iter().enumerate() {
        let Some(value) = info.labels.get(&c.topology_key) else {
            return Err(Rejection::SpreadLabel);
        };
        let self_match = i64::from(c.selector.matches(&pod.labels));
        let match_num = spread.counts[i].get(value).copied().unwrap_or(0);
        if match_num + self_match - spread.min_match[i] > c.max_skew {
            return Err(Rejection::Spread);
        }
    }
    Ok(())
}

/// `fitsRequest`: the bit set of resources the node lacks for the pod (see [`Rejection`]).
fn insufficient_resources(snapshot: &Snapshot, idx: NodeIdx, pod: &PreparedPod) -> u64 {
    let slot = snapshot.slot(idx);
    let Some(info) = slot.info.as_ref() else {
        return 1;
    };
    let alloc = &info.allocatable;
    let used = &slot.requested;
    let want = &pod.requests.requests;
    let mut bits = 0u64;
    if i64::try_from(slot.pod_count()).unwrap_or(i64::MAX) + 1 > alloc.allowed_pods {
        bits |= 1;
    }
    if want.is_zero_request() {
        return bits;
    }
    if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        bits |= 1 << 1;
    }
    if want.memory > 0 && want.memory > alloc.memory - used.memory {
        bits |= 1 << 2;
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        bits |= 1 << 3;
    }
    for (i, (name, amount)) in want.scalars.iter().enumerate() {
        if *amount != 0 && *amount > alloc.scalar(name) - used.scalar(name) {
            bits |= 1 << (4 + i);
        }
    }
    bits
}

/// Counts of rejection reasons over the nodes that failed (`Diagnosis`), kept without
/// allocating per node.
#[derive(Debug, Default)]
pub(crate) struct Diagnosis {
    counts: [usize; 7],
    fit: [usize; 4],
    scalars: Vec<usize>,
    plugins: BTreeSet<&'static str>,
    /// Nodes with an explicit status (`NodeToStatus.Len`).
    pub(crate) rejected: usize,
    /// Of those, nodes rejected with a status preemption could resolve (`Unschedulable`, not
    /// `UnschedulableAndUnresolvable`): resources, ports, spreading skew.
    resolvable: usize,
}

impl Diagnosis {
    pub(crate) fn record(&mut self, r: Rejection) {
        self.rejected += 1;
        self.plugins.insert(r.plugin());
        if matches!(r, Rejection::Ports | Rejection::Fit(_) | Rejection::Spread) {
            self.resolvable += 1;
        }
        let slot = match r {
            Rejection::Unschedulable => 0,
            Rejection::NodeName => 1,
            Rejection::Taint => 2,
            Rejection::Affinity => 3,
            Rejection::Ports => 4,
            Rejection::SpreadLabel => 5,
            Rejection::Spread => 6,
            Rejection::Fit(bits) => {
                for (b, n) in self.fit.iter_mut().enumerate() {
                    if bits & (1 << b) != 0 {
                        *n += 1;
                    }
                }
                let scalar_bits = bits >> 4;
                if scalar_bits != 0 {
                    let needed = 64 - scalar_bits.leading_zeros() as usize;
                    if self.scalars.len() < needed {
                        self.scalars.resize(needed, 0);
                    }
                    for (i, n) in self.scalars.iter_mut().enumerate() {
                        if scalar_bits & (1 << i) != 0 {
                            *n += 1;
                        }
                    }
                }
                return;
            }
        };
        self.counts[slot] += 1;
    }

    /// The `FitError` for a pod no node fits.
    pub(crate) fn into_fit_error(
        self,
        pod: &PreparedPod,
        num_all_nodes: usize,
        ruled_out_by_name: bool,
    ) -> FitError {
        let fixed = [
            REASON_UNSCHEDULABLE,
            REASON_NODE_NAME,
            REASON_TAINT,
            REASON_AFFINITY,
            REASON_PORTS,
            REASON_SPREAD_LABEL,
            REASON_SPREAD,
        ];
        let mut reasons: Vec<(String, usize)> = fixed
            .iter()
            .zip(self.counts)
            .map(|(r, n)| ((*r).to_owned(), n))
            .collect();
        let fit = [
            "Too many pods",
            "Insufficient cpu",
            "Insufficient memory",
            "Insufficient ephemeral-storage",
        ];
        reasons.extend(fit.iter().zip(self.fit).map(|(r, n)| ((*r).to_owned(), n)));
        for (i, n) in self.scalars.iter().enumerate() {
            if let Some((name, _)) = pod.requests.requests.scalars.get(i) {
                reasons.push((format!("Insufficient {name}"), *n));
            }
        }
        let mut plugins = self.plugins;
        if ruled_out_by_name && self.rejected < num_all_nodes {
            reasons.push((
                REASON_PREFILTER_NODE_NAMES.to_owned(),
                num_all_nodes - self.rejected,
            ));
            plugins.insert("NodeAffinity");
        }
        reasons.retain(|(_, n)| *n > 0);
        FitError {
            num_all_nodes,
            pre_filter_message: None,
            preemption_may_help: self.resolvable,
            reasons,
            unschedulable_plugins: plugins.into_iter().collect(),
        }
    }
}

/// Why a pod fits no node: Kubernetes' `FitError`. Its `Display` is the message of the pod's
/// `PodScheduled=False` condition (reason Unschedulable) and of the FailedScheduling event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    /// The nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Set when a PreFilter rejected the pod outright (then no per-node reasons are listed).
    pub pre_filter_message: Option<String>,
    /// Nodes whose rejection preemption might resolve (`nodesWherePreemptionMightHelp`); the
    /// other nodes' statuses are `UnschedulableAndUnresolvable`.
    pub preemption_may_help: usize,
    /// Each reason with the number of nodes that gave it.
    pub reasons: Vec<(String, usize)>,
    /// The plugins that rejected nodes (what a requeue would wait on).
    pub unschedulable_plugins: Vec<&'static str>,
}

impl fmt::Display for FitError {
    /// "0/N nodes are available: <n reason>, <n reason>." with the "n reason" strings sorted
    /// as strings, as `sortReasonsHistogram` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter_message {
            return write!(f, " {msg}.");
        }
        let mut histogram: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        histogram.sort();
        if !histogram.is_empty() {
            write!(f, " {}.", histogram.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}
