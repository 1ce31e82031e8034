//! The scheduler's cache of nodes and the pods bound (or assumed bound) to them: what
//! pkg/scheduler/backend/cache keeps (`NodeInfo` per node, the zone-interleaved node list of
//! `nodeTree`, `AssumePod` / `ForgetPod`), plus an index of pods by label that lets topology
//! spreading count a selector's pods without scanning every pod.
//!
//! The scheduling loop feeds it from its node and pod watches ([`Snapshot::upsert_node`],
//! [`Snapshot::upsert_pod`], [`Snapshot::remove_pod`]) and, around a bind, assumes the pod on
//! the chosen node ([`Snapshot::assume`]) so the next pod sees it, then either lets the watch
//! confirm it (the bound pod replaces the assumed one: it is never counted twice) or undoes it
//! ([`Snapshot::forget`]) when the bind loses a race.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::Error;
use crate::node::NodeInfo;
use crate::pod::{HostPort, PreparedPod, host_ports, pod_key};
use crate::resources::{PodRequests, Resources};
use crate::selector::{Requirement, Selector};

pub(crate) type NodeIdx = u32;
type PodIdx = u32;

/// A pod as the cache accounts for it.
#[derive(Clone, Debug)]
pub(crate) struct PodEntry {
    key: Box<str>,
    pub(crate) namespace: Box<str>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) node: NodeIdx,
    requests: PodRequests,
    host_ports: Vec<HostPort>,
    /// Has a deletionTimestamp: still holds resources, no longer counts for spreading.
    pub(crate) terminating: bool,
    /// Placed by [`Snapshot::assume`] and not yet seen bound by the watch.
    assumed: bool,
}

/// Everything the cache knows about one node name.
#[derive(Clone, Debug)]
pub(crate) struct NodeSlot {
    pub(crate) name: Box<str>,
    /// None while pods name a node the cache has not seen (or that was deleted before them).
    pub(crate) info: Option<NodeInfo>,
    pods: Vec<PodIdx>,
    /// `NodeInfo.Requested`.
    pub(crate) requested: Resources,
    /// `NodeInfo.NonZeroRequested`.
    pub(crate) non_zero_milli_cpu: i64,
    pub(crate) non_zero_memory: i64,
    /// `NodeInfo.UsedPorts`, with a count per entry so that two pods using one port (possible
    /// only when something bypassed the scheduler) are both accounted for.
    used_ports: Vec<(HostPort, u32)>,
}

impl NodeSlot {
    pub(crate) fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// `HostPortInfo.CheckConflict`.
    pub(crate) fn port_conflicts(&self, want: &HostPort) -> bool {
        self.used_ports
            .iter()
            .any(|(used, _)| want.conflicts_with(used))
    }
}

/// Labels of pods by namespace, key and value, to the pods carrying them.
type LabelIndex = HashMap<Box<str>, HashMap<Box<str>, HashMap<Box<str>, Vec<PodIdx>>>>;

/// The cluster as the scheduler sees it. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeSlot>,
    free_nodes: Vec<NodeIdx>,
    node_by_name: HashMap<Box<str>, NodeIdx>,
    /// `nodeTree`: zones in the order first seen, each with its nodes in the order added.
    zones: Vec<(Box<str>, Vec<NodeIdx>)>,
    /// The present nodes in `nodeTree.list()` order (zones interleaved); rebuilt when a node is
    /// added, removed or changes zone.
    order: Vec<NodeIdx>,
    pods: Vec<Option<PodEntry>>,
    free_pods: Vec<PodIdx>,
    pod_by_key: HashMap<Box<str>, PodIdx>,
    label_index: LabelIndex,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// The number of nodes pods can be scheduled to (`NumNodes`).
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// The number of pods bound or assumed.
    pub fn num_pods(&self) -> usize {
        self.pod_by_key.len()
    }

    /// Names of the nodes in the order the scheduler walks them.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|&i| &*self.nodes[i as usize].name)
    }

    /// Adds or updates a node (`AddNode` / `UpdateNode`).
    pub fn upsert_node(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(Error::MissingName("node"));
        }
        let info = NodeInfo::from_api(node)?;
        let idx = self.node_slot(name);
        let slot = &mut self.nodes[idx as usize];
        let old_zone = slot.info.as_ref().map(|i| i.zone_key.clone());
        let zone = info.zone_key.clone();
        slot.info = Some(info);
        if old_zone.as_ref() != Some(&zone) {
            if let Some(old) = old_zone {
                self.tree_remove(&old, idx);
            }
            self.tree_add(zone, idx);
        }
        Ok(())
    }

    /// Removes a node (`RemoveNode`). Pods still bound to it stay accounted until they go, as
    /// the node's `NodeInfo` does in Kubernetes, but no pod is scheduled to it.
    pub fn remove_node(&mut self, name: &str) {
        let Some(&idx) = self.node_by_name.get(name) else {
            return;
        };
        let slot = &mut self.nodes[idx as usize];
        if let Some(info) = slot.info.take() {
            self.tree_remove(&info.zone_key, idx);
        }
        self.release_node_if_unused(idx);
    }

    /// Adds or updates a pod from the watch (`AddPod` / `UpdatePod`). A pod without a node, or
    /// in a terminal phase, is not on any node: it is removed if present. A pod the scheduler
    /// assumed is replaced by its bound version, so it is counted once.
    pub fn upsert_pod(&mut self, pod: &Pod) -> Result<(), Error> {
        let key = pod_key(pod)?;
        let spec = pod.spec.as_ref();
        let node_name = spec
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if node_name.is_empty() || matches!(phase, Some("Succeeded" | "Failed")) {
            self.remove_pod(&key);
            return Ok(());
        }
        let default_spec = Default::default();
        let spec = spec.unwrap_or(&default_spec);
        let requests = PodRequests::of(spec)?;
        let host_ports = host_ports(spec);
        let entry = |node| PodEntry {
            key: key.as_str().into(),
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default().into(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node,
            requests,
            host_ports,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            assumed: false,
        };
        self.remove_pod(&key);
        let node = self.node_slot(node_name);
        self.insert_pod(entry(node));
        Ok(())
    }

    /// Removes a pod by key (its uid, or `namespace/name` without one): `RemovePod`.
    pub fn remove_pod(&mut self, key: &str) {
        let Some(idx) = self.pod_by_key.remove(key) else {
            return;
        };
        let Some(entry) = self.pods[idx as usize].take() else {
            return;
        };
        self.free_pods.push(idx);
        self.unindex_labels(&entry, idx);
        let node = entry.node;
        let slot = &mut self.nodes[node as usize];
        if let Some(pos) = slot.pods.iter().position(|&p| p == idx) {
            slot.pods.swap_remove(pos);
        }
        slot.requested.add_signed(&entry.requests.requests, -1);
        slot.non_zero_milli_cpu -= entry.requests.non_zero_milli_cpu;
        slot.non_zero_memory -= entry.requests.non_zero_memory;
        for port in &entry.host_ports {
            if let Some(pos) = slot.used_ports.iter().position(|(p, _)| p == port) {
                slot.used_ports[pos].1 -= 1;
                if slot.used_ports[pos].1 == 0 {
                    slot.used_ports.swap_remove(pos);
                }
            }
        }
        self.release_node_if_unused(node);
    }

    /// Places a pod on a node before its binding is written (`AssumePod`), so that the pods
    /// scheduled meanwhile see the node's resources, ports and spreading as they will be.
    pub fn assume(&mut self, pod: &PreparedPod, node_name: &str) -> Result<(), Error> {
        if self.pod_by_key.contains_key(pod.key()) {
            return Err(Error::AlreadyInCache(pod.key().to_owned()));
        }
        let Some(&node) = self.node_by_name.get(node_name) else {
            return Err(Error::NodeNotFound(node_name.to_owned()));
        };
        self.insert_pod(PodEntry {
            key: pod.key().into(),
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            node,
            requests: pod.requests.clone(),
            host_ports: pod.host_ports.clone(),
            terminating: false,
            assumed: true,
        });
        Ok(())
    }

    /// Undoes [`Snapshot::assume`] after a failed bind (`ForgetPod`). A pod the watch already
    /// confirmed bound is left alone.
    pub fn forget(&mut self, key: &str) -> Result<(), Error> {
        let assumed = self
            .pod_by_key
            .get(key)
            .and_then(|&i| self.pods[i as usize].as_ref())
            .map(|e| e.assumed);
        match assumed {
            Some(true) => {
                self.remove_pod(key);
                Ok(())
            }
            _ => Err(Error::NotAssumed(key.to_owned())),
        }
    }

    /// After a bind that failed: undoes the assumption ([`Snapshot::forget`]) and returns the
    /// node the watch already shows the pod bound to, if any. Such a pod is not requeued, as in
    /// Kubernetes' `handleSchedulingFailure` ("Pod has been assigned to node. Abort adding it
    /// back to queue."): the bind reached the apiserver although its answer was an error.
    pub fn forget_failed_bind(&mut self, key: &str) -> Option<String> {
        match self.forget(key) {
            Ok(()) => None,
            Err(_) => self.node_of(key).map(str::to_owned),
        }
    }

    /// Whether the pod with this key is assumed and not yet confirmed by the watch.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pod_by_key
            .get(key)
            .and_then(|&i| self.pods[i as usize].as_ref())
            .is_some_and(|e| e.assumed)
    }

    /// The node a pod is on (bound or assumed).
    pub fn node_of(&self, key: &str) -> Option<&str> {
        let idx = *self.pod_by_key.get(key)?;
        let entry = self.pods[idx as usize].as_ref()?;
        Some(&self.nodes[entry.node as usize].name)
    }

    /// Requested resources, pod count and the scoring view of one node, for callers and tests.
    pub fn node_usage(&self, name: &str) -> Option<NodeUsage> {
        let slot = &self.nodes[*self.node_by_name.get(name)? as usize];
        Some(NodeUsage {
            requested: slot.requested.clone(),
            non_zero_milli_cpu: slot.non_zero_milli_cpu,
            non_zero_memory: slot.non_zero_memory,
            pods: slot.pods.len(),
            host_ports: slot
                .used_ports
                .iter()
                .map(|(p, n)| (p.clone(), *n))
                .collect(),
        })
    }

    pub(crate) fn order(&self) -> &[NodeIdx] {
        &self.order
    }

    pub(crate) fn slot(&self, idx: NodeIdx) -> &NodeSlot {
        &self.nodes[idx as usize]
    }

    pub(crate) fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.node_by_name.get(name).copied()
    }

    /// Calls `f` with every non-terminating pod of `namespace` that `selector` matches
    /// (`countPodsMatchSelector`, which counts nothing for an empty selector). Candidates come
    /// from the label index: the postings of the most selective `In` requirement, or of an
    /// `Exists` one, falling back to every pod only for selectors with neither.
    pub(crate) fn for_each_matching_pod(
        &self,
        namespace: &str,
        selector: &Selector,
        mut f: impl FnMut(&PodEntry),
    ) {
        if selector.is_empty() || matches!(selector, Selector::Nothing) {
            return;
        }
        let mut visit = |idx: PodIdx| {
            if let Some(entry) = &self.pods[idx as usize]
                && !entry.terminating
                && &*entry.namespace == namespace
                && selector.matches(&entry.labels)
            {
                f(entry);
            }
        };
        let Some(by_key) = self.label_index.get(namespace) else {
            return;
        };
        let postings_len = |req: &Requirement| -> Option<usize> {
            let values = by_key.get(req.key());
            match req {
                Requirement::In(_, vs) => Some(
                    vs.iter()
                        .filter_map(|v| values?.get(v.as_str()))
                        .map(Vec::len)
                        .sum(),
                ),
                Requirement::Exists(_) => {
                    Some(values.map_or(0, |m| m.values().map(Vec::len).sum()))
                }
                _ => None,
            }
        };
        let best = selector
            .requirements()
            .iter()
            .filter_map(|r| postings_len(r).map(|n| (n, r)))
            .min_by_key(|(n, _)| *n);
        match best {
            Some((_, req)) => {
                let Some(values) = by_key.get(req.key()) else {
                    return;
                };
                match req {
                    Requirement::In(_, vs) => {
                        for v in vs {
                            for &idx in values.get(v.as_str()).into_iter().flatten() {
                                visit(idx);
                            }
                        }
                    }
                    _ => {
                        for idx in values.values().flatten() {
                            visit(*idx);
                        }
                    }
                }
            }
            None => {
                for idx in 0..self.pods.len() {
                    visit(idx as PodIdx);
                }
            }
        }
    }

    fn node_slot(&mut self, name: &str) -> NodeIdx {
        if let Some(&idx) = self.node_by_name.get(name) {
            return idx;
        }
        let slot = NodeSlot {
            name: name.into(),
            info: None,
            pods: Vec::new(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            used_ports: Vec::new(),
        };
        let idx = match self.free_nodes.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = slot;
                idx
            }
            None => {
                self.nodes.push(slot);
                NodeIdx::try_from(self.nodes.len() - 1).unwrap_or(NodeIdx::MAX)
            }
        };
        self.node_by_name.insert(name.into(), idx);
        idx
    }

    fn release_node_if_unused(&mut self, idx: NodeIdx) {
        let slot = &self.nodes[idx as usize];
        if slot.info.is_none() && slot.pods.is_empty() {
            self.node_by_name.remove(&slot.name);
            self.free_nodes.push(idx);
        }
    }

    fn insert_pod(&mut self, entry: PodEntry) {
        let idx = match self.free_pods.pop() {
            Some(idx) => idx,
            None => {
                self.pods.push(None);
                PodIdx::try_from(self.pods.len() - 1).unwrap_or(PodIdx::MAX)
            }
        };
        let slot = &mut self.nodes[entry.node as usize];
        slot.pods.push(idx);
        slot.requested.add_signed(&entry.requests.requests, 1);
        slot.non_zero_milli_cpu += entry.requests.non_zero_milli_cpu;
        slot.non_zero_memory += entry.requests.non_zero_memory;
        for port in &entry.host_ports {
            match slot.used_ports.iter().position(|(p, _)| p == port) {
                Some(pos) => slot.used_ports[pos].1 += 1,
                None => slot.used_ports.push((port.clone(), 1)),
            }
        }
        self.index_labels(&entry, idx);
        self.pod_by_key.insert(entry.key.clone(), idx);
        self.pods[idx as usize] = Some(entry);
    }

    fn index_labels(&mut self, entry: &PodEntry, idx: PodIdx) {
        let by_key = self.label_index.entry(entry.namespace.clone()).or_default();
        for (k, v) in &entry.labels {
            by_key
                .entry(k.as_str().into())
                .or_default()
                .entry(v.as_str().into())
                .or_default()
                .push(idx);
        }
    }

    fn unindex_labels(&mut self, entry: &PodEntry, idx: PodIdx) {
        let Some(by_key) = self.label_index.get_mut(&*entry.namespace) else {
            return;
        };
        for (k, v) in &entry.labels {
            let Some(values) = by_key.get_mut(k.as_str()) else {
                continue;
            };
            if let Some(postings) = values.get_mut(v.as_str()) {
                if let Some(pos) = postings.iter().position(|&p| p == idx) {
                    postings.swap_remove(pos);
                }
                if postings.is_empty() {
                    values.remove(v.as_str());
                }
            }
            if values.is_empty() {
                by_key.remove(k.as_str());
            }
        }
        if by_key.is_empty() {
            self.label_index.remove(&*entry.namespace);
        }
    }

    fn tree_add(&mut self, zone: Box<str>, idx: NodeIdx) {
        match self.zones.iter_mut().find(|(z, _)| *z == zone) {
            Some((_, nodes)) => nodes.push(idx),
            None => self.zones.push((zone, vec![idx])),
        }
        self.rebuild_order();
    }

    fn tree_remove(&mut self, zone: &str, idx: NodeIdx) {
        if let Some(z) = self.zones.iter().position(|(name, _)| &**name == zone) {
            let nodes = &mut self.zones[z].1;
            if let Some(pos) = nodes.iter().position(|&n| n == idx) {
                nodes.remove(pos);
            }
            if nodes.is_empty() {
                self.zones.remove(z);
            }
        }
        self.rebuild_order();
    }

    /// `nodeTree.list()`: the first node of every zone, then the second of every zone, ...
    fn rebuild_order(&mut self) {
        self.order.clear();
        let longest = self.zones.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (_, nodes) in &self.zones {
                if let Some(&n) = nodes.get(i) {
                    self.order.push(n);
                }
            }
        }
    }
}

/// What a node has committed, as [`Snapshot::node_usage`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUsage {
    /// The sum of the requests of its pods.
    pub requested: Resources,
    /// CPU counted with the scoring default for containers without a request.
    pub non_zero_milli_cpu: i64,
    /// Memory counted with the scoring default for containers without a request.
    pub non_zero_memory: i64,
    /// Its pods, bound or assumed.
    pub pods: usize,
    /// The host ports in use and how many pods use each.
    pub host_ports: Vec<(HostPort, u32)>,
}
