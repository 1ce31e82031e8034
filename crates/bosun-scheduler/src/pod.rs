//! A pod to schedule, with everything the filters and scores need computed once: the PreFilter
//! and PreScore state of Kubernetes' plugins (requests, host ports, tolerations, parsed node
//! affinity, topology spread constraints).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::Error;
use crate::affinity::{NodeNames, PreferredTerms, RequiredAffinity, node_names};
use crate::node::{LABEL_HOSTNAME, LABEL_TOPOLOGY_ZONE};
use crate::resources::{MAX_POD_SCALAR_RESOURCES, PodRequests};
use crate::selector::{Requirement, Selector};
use crate::taints::{Effect, Toleration, tolerated};

/// The cache key of a pod: its uid, or `namespace/name` when it has none.
pub fn pod_key(pod: &Pod) -> Result<String, Error> {
    if let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        return Ok(uid.to_owned());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(Error::MissingName("pod"));
    }
    Ok(format!(
        "{}/{name}",
        pod.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

/// A host port a pod binds (`HostPortInfo` entry): the IP ("0.0.0.0" for all), protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    /// The host IP; "0.0.0.0" when unset.
    pub ip: Box<str>,
    /// TCP, UDP or SCTP; "TCP" when unset.
    pub protocol: Box<str>,
    /// The port, > 0.
    pub port: i32,
}

const BIND_ALL: &str = "0.0.0.0";

impl HostPort {
    /// `HostPortInfo.CheckConflict`: the same protocol and port, and the same IP or either
    /// binding all addresses.
    pub(crate) fn conflicts_with(&self, used: &HostPort) -> bool {
        self.port == used.port
            && self.protocol == used.protocol
            && (&*self.ip == BIND_ALL || &*used.ip == BIND_ALL || self.ip == used.ip)
    }
}

/// `schedutil.GetHostPorts`: the ports of init and app containers with a host port, sanitized
/// as `HostPortInfo.Add` does.
pub(crate) fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&hp| hp > 0)?;
            Some(HostPort {
                ip: p
                    .host_ip
                    .as_deref()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or(BIND_ALL)
                    .into(),
                protocol: p
                    .protocol
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("TCP")
                    .into(),
                port,
            })
        })
        .collect()
}

/// A node inclusion policy of a spread constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inclusion {
    Honor,
    Ignore,
}

/// `topologySpreadConstraint`: one parsed constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpreadConstraint {
    pub(crate) max_skew: i64,
    pub(crate) topology_key: Box<str>,
    pub(crate) selector: Selector,
    pub(crate) min_domains: i64,
    node_affinity_policy: Inclusion,
    node_taints_policy: Inclusion,
}

impl SpreadConstraint {
    pub(crate) fn is_hostname(&self) -> bool {
        &*self.topology_key == LABEL_HOSTNAME
    }
}

/// The system default constraints of PodTopologySpread (`systemDefaultConstraints`), both
/// ScheduleAnyway: hostname with maxSkew 3, zone with maxSkew 5.
const SYSTEM_DEFAULT_CONSTRAINTS: [(&str, i64); 2] =
    [(LABEL_HOSTNAME, 3), (LABEL_TOPOLOGY_ZONE, 5)];

/// `helper.DefaultSelector`: the selector that system-default spreading uses for a pod without
/// constraints of its own: the services selecting it (their selectors merged) and its
/// controller's selector (a ReplicaSet's or StatefulSet's `LabelSelector`, or a
/// ReplicationController's map, as `matchLabels`). Returns None when that selects nothing. A
/// controller selector that does not parse is left out, as Kubernetes leaves it out.
pub fn default_spread_selector(
    service_selectors: &[&BTreeMap<String, String>],
    controller_selector: Option<&LabelSelector>,
) -> Option<DefaultSelector> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for s in service_selectors {
        merged.extend(s.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut selector = Selector::All(
        merged
            .into_iter()
            .map(|(k, v)| Requirement::In(k, vec![v]))
            .collect(),
    );
    if let Some(Ok(controller)) = controller_selector.map(|c| Selector::parse(Some(c))) {
        for r in controller.requirements() {
            selector.add(r.clone());
        }
    }
    (!selector.is_empty()).then_some(DefaultSelector(selector))
}

/// The selector system-default spreading applies to a pod (see [`default_spread_selector`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultSelector(Selector);

/// A pod ready to be scheduled: parsed once, then filtered and scored against many nodes.
#[derive(Clone, Debug)]
pub struct PreparedPod {
    key: String,
    pub(crate) namespace: Box<str>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) node_name: Option<Box<str>>,
    pub(crate) nominated_node_name: Option<Box<str>>,
    pub(crate) requests: PodRequests,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) tolerations: Vec<Toleration>,
    /// The tolerations that apply to PreferNoSchedule taints.
    pub(crate) prefer_no_schedule_tolerations: Vec<Toleration>,
    pub(crate) tolerates_unschedulable: bool,
    pub(crate) required: RequiredAffinity,
    pub(crate) node_names: NodeNames,
    pub(crate) preferred: Option<PreferredTerms>,
    /// DoNotSchedule constraints (the filter).
    pub(crate) hard_spread: Vec<SpreadConstraint>,
    /// ScheduleAnyway constraints, or the system defaults (the score).
    pub(crate) soft_spread: Vec<SpreadConstraint>,
    /// Nodes must carry every soft constraint's key to be scored (not for system defaults).
    pub(crate) soft_spread_require_all: bool,
}

impl PreparedPod {
    /// Prepares a pod. `default_selector` is what [`default_spread_selector`] gives for it: it
    /// only matters when the pod has no topology spread constraints of its own.
    pub fn new(
        pod: &Pod,
        default_selector: Option<&DefaultSelector>,
    ) -> Result<PreparedPod, Error> {
        let key = pod_key(pod)?;
        let default_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let requests = PodRequests::of(spec)?;
        if requests.requests.scalars.len() > MAX_POD_SCALAR_RESOURCES {
            return Err(Error::TooManyExtendedResources(
                requests.requests.scalars.len(),
            ));
        }
        let tolerations: Vec<Toleration> = spec
            .tolerations
            .iter()
            .flatten()
            .map(Toleration::from_api)
            .collect();
        let own = spec
            .topology_spread_constraints
            .as_deref()
            .unwrap_or_default();
        let (hard_spread, soft_spread) = if own.is_empty() {
            let soft = match default_selector {
                Some(DefaultSelector(sel)) => SYSTEM_DEFAULT_CONSTRAINTS
                    .iter()
                    .map(|&(key, max_skew)| SpreadConstraint {
                        max_skew,
                        topology_key: key.into(),
                        selector: sel.clone(),
                        min_domains: 1,
                        node_affinity_policy: Inclusion::Honor,
                        node_taints_policy: Inclusion::Ignore,
                    })
                    .collect(),
                None => Vec::new(),
            };
            (Vec::new(), soft)
        } else {
            (
                spread_constraints(own, &labels, "DoNotSchedule")?,
                spread_constraints(own, &labels, "ScheduleAnyway")?,
            )
        };
        Ok(PreparedPod {
            key,
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default().into(),
            node_name: spec
                .node_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(Into::into),
            nominated_node_name: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                .filter(|n| !n.is_empty())
                .map(Into::into),
            host_ports: host_ports(spec),
            tolerates_unschedulable: tolerated(
                &tolerations,
                "node.kubernetes.io/unschedulable",
                "",
                Effect::NoSchedule,
            ),
            prefer_no_schedule_tolerations: tolerations
                .iter()
                .filter(|t| t.applies_to_prefer_no_schedule())
                .cloned()
                .collect(),
            tolerations,
            required: RequiredAffinity::of(spec),
            node_names: node_names(spec),
            preferred: PreferredTerms::of(spec)?,
            soft_spread_require_all: !own.is_empty(),
            hard_spread,
            soft_spread,
            requests,
            labels,
        })
    }

    /// The pod's cache key (uid, or `namespace/name`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The pod's requests as the scheduler accounts them.
    pub fn requests(&self) -> &PodRequests {
        &self.requests
    }

    /// `matchNodeInclusionPolicies`: whether a node counts as a domain for constraint `c`.
    pub(crate) fn node_included(
        &self,
        c: &SpreadConstraint,
        name: &str,
        info: &crate::node::NodeInfo,
    ) -> bool {
        if c.node_affinity_policy == Inclusion::Honor && !self.required.matches(name, &info.labels)
        {
            return false;
        }
        if c.node_taints_policy == Inclusion::Honor
            && crate::taints::has_untolerated_blocking_taint(&info.taints, &self.tolerations)
        {
            return false;
        }
        true
    }
}

/// `filterTopologySpreadConstraints`: the constraints with `when`, their selectors parsed and
/// `matchLabelKeys` merged in from the pod's labels.
fn spread_constraints(
    all: &[TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
    when: &str,
) -> Result<Vec<SpreadConstraint>, Error> {
    let mut out = Vec::new();
    for c in all.iter().filter(|c| c.when_unsatisfiable == when) {
        let mut selector = Selector::parse(c.label_selector.as_ref())?;
        let keys = c.match_label_keys.as_deref().unwrap_or_default();
        let matched: Vec<Requirement> = keys
            .iter()
            .filter_map(|k| {
                pod_labels
                    .get(k)
                    .map(|v| Requirement::In(k.clone(), vec![v.clone()]))
            })
            .collect();
        // mergeLabelSetWithSelector: the keys' requirements, then the selector's; a nil
        // selector stays Nothing.
        if !matched.is_empty() && selector != Selector::Nothing {
            let rest = selector.requirements().to_vec();
            selector = Selector::All(matched);
            for r in rest {
                selector.add(r);
            }
        }
        let policy = |p: Option<&str>, default| match p {
            Some("Honor") => Inclusion::Honor,
            Some("Ignore") => Inclusion::Ignore,
            _ => default,
        };
        out.push(SpreadConstraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.as_str().into(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            node_affinity_policy: policy(c.node_affinity_policy.as_deref(), Inclusion::Honor),
            node_taints_policy: policy(c.node_taints_policy.as_deref(), Inclusion::Ignore),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // helper/spread_test.go TestDefaultSelector, in spirit: services and the owner combine.
    #[test]
    fn default_selector_merges_services_and_owner() {
        let svc_a = map(&[("app", "web")]);
        let svc_b = map(&[("tier", "front")]);
        let rs = LabelSelector {
            match_labels: Some(map(&[("pod-template-hash", "abc")])),
            match_expressions: None,
        };
        let Some(DefaultSelector(sel)) = default_spread_selector(&[&svc_a, &svc_b], Some(&rs))
        else {
            panic!("expected a selector");
        };
        assert!(sel.matches(&map(&[
            ("app", "web"),
            ("tier", "front"),
            ("pod-template-hash", "abc")
        ])));
        assert!(!sel.matches(&map(&[("app", "web"), ("tier", "front")])));
        assert_eq!(
            default_spread_selector(&[], None),
            None,
            "nothing selects the pod"
        );
        let empty = LabelSelector::default();
        assert_eq!(
            default_spread_selector(&[], Some(&empty)),
            None,
            "an empty selector is no selector"
        );
        let invalid = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "In".into(),
                values: None,
            }]),
        };
        let Some(DefaultSelector(sel)) = default_spread_selector(&[&svc_a], Some(&invalid)) else {
            panic!("the services still select");
        };
        assert!(sel.matches(&map(&[("app", "web")])));
    }
}
