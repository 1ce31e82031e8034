//! What the scheduler keeps of a Node object (`NodeInfo.SetNode`).

use k8s_openapi::api::core::v1::Node;

use crate::Error;
use crate::resources::Resources;
use crate::taints::Taint;

/// Well-known label keys.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The zone label.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// The region label.
pub const LABEL_TOPOLOGY_REGION: &str = "topology.kubernetes.io/region";
const LABEL_FAILURE_DOMAIN_BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const LABEL_FAILURE_DOMAIN_BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";

/// A node's labels, sorted by key for lookups without hashing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeLabels(Vec<(Box<str>, Box<str>)>);

impl NodeLabels {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for NodeLabels {
    fn from_iter<T: IntoIterator<Item = (&'a str, &'a str)>>(iter: T) -> Self {
        let mut v: Vec<(Box<str>, Box<str>)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        NodeLabels(v)
    }
}

/// The parts of a Node the filters and scores read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub(crate) labels: NodeLabels,
    pub(crate) taints: Vec<Taint>,
    pub(crate) allocatable: Resources,
    pub(crate) unschedulable: bool,
    /// `utilnode.GetZoneKey`: the zone the node list interleaves by.
    pub(crate) zone_key: Box<str>,
}

impl NodeInfo {
    pub(crate) fn from_api(node: &Node) -> Result<NodeInfo, Error> {
        let labels: NodeLabels = node
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let spec = node.spec.as_ref();
        let zone_key = zone_key(&labels).into();
        Ok(NodeInfo {
            taints: spec
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .map(Taint::from_api)
                .collect(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: Resources::from_list(
                node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
            )?,
            labels,
            zone_key,
        })
    }
}

/// `utilnode.GetZoneKey`: region and zone (GA labels first, then the deprecated beta ones),
/// joined with ":\0:"; empty when the node has neither.
fn zone_key(labels: &NodeLabels) -> String {
    let zone = labels
        .get(LABEL_TOPOLOGY_ZONE)
        .or_else(|| labels.get(LABEL_FAILURE_DOMAIN_BETA_ZONE))
        .unwrap_or_default();
    let region = labels
        .get(LABEL_TOPOLOGY_REGION)
        .or_else(|| labels.get(LABEL_FAILURE_DOMAIN_BETA_REGION))
        .unwrap_or_default();
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}
