//! Builders for the Kubernetes objects the tests feed the scheduler, in the spirit of
//! Kubernetes' pkg/scheduler/testing wrappers (`st.MakePod()`, `st.MakeNode()`).

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, PreferredSchedulingTerm,
    ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

pub fn resources(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

pub fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub struct NodeBuilder(Node);

/// A node with a hostname label, like the nodes kubelets register.
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(string_map(&[("kubernetes.io/hostname", name)])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus::default()),
    })
}

impl NodeBuilder {
    /// Sets capacity and allocatable (as `st.MakeNode().Capacity` does).
    pub fn capacity(mut self, pairs: &[(&str, &str)]) -> Self {
        let status = self.0.status.get_or_insert_with(Default::default);
        status.capacity = Some(resources(pairs));
        status.allocatable = Some(resources(pairs));
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    pub fn no_hostname(mut self) -> Self {
        if let Some(l) = self.0.metadata.labels.as_mut() {
            l.remove("kubernetes.io/hostname");
        }
        self
    }
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.0.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }
    pub fn unschedulable(mut self) -> Self {
        self.0
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }
    pub fn obj(self) -> Node {
        self.0
    }
}

pub struct PodBuilder(Pod);

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus::default()),
    })
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }
    /// Adds a container with these requests (`st.MakePod().Req`).
    pub fn req(mut self, pairs: &[(&str, &str)]) -> Self {
        let n = self.spec().containers.len();
        self.spec().containers.push(Container {
            name: format!("c{n}"),
            resources: Some(ResourceRequirements {
                requests: Some(resources(pairs)),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }
    /// Adds a container without requests.
    pub fn container(mut self) -> Self {
        let n = self.spec().containers.len();
        self.spec().containers.push(Container {
            name: format!("c{n}"),
            ..Default::default()
        });
        self
    }
    pub fn init_req(mut self, pairs: &[(&str, &str)]) -> Self {
        let c = Container {
            name: "init".into(),
            resources: Some(ResourceRequirements {
                requests: Some(resources(pairs)),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.spec()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c);
        self
    }
    pub fn host_port(mut self, ip: &str, protocol: &str, port: i32) -> Self {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(Container {
                name: "c0".into(),
                ..Default::default()
            });
        }
        let c = spec
            .containers
            .last_mut()
            .map(|c| c.ports.get_or_insert_with(Vec::new));
        if let Some(ports) = c {
            ports.push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                host_ip: (!ip.is_empty()).then(|| ip.into()),
                protocol: (!protocol.is_empty()).then(|| protocol.into()),
                name: None,
            });
        }
        self
    }
    pub fn node(mut self, name: &str) -> Self {
        self.spec().node_name = Some(name.into());
        self
    }
    pub fn nominated(mut self, name: &str) -> Self {
        self.0
            .status
            .get_or_insert_with(Default::default)
            .nominated_node_name = Some(name.into());
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    pub fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(Default::default()));
        self
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self
    }
    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: (!key.is_empty()).then(|| key.into()),
                operator: (!op.is_empty()).then(|| op.into()),
                value: (!value.is_empty()).then(|| value.into()),
                effect: (!effect.is_empty()).then(|| effect.into()),
                toleration_seconds: None,
            });
        self
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }
    /// Adds a required term with one expression.
    pub fn required_term(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![req(key, op, values)]),
            match_fields: None,
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }
    /// Adds a required term on `metadata.name`.
    pub fn required_node_name(mut self, names: &[&str]) -> Self {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", names)]),
        };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(|| NodeSelector {
                node_selector_terms: Vec::new(),
            })
            .node_selector_terms
            .push(term);
        self
    }
    pub fn preferred_term(mut self, weight: i32, exprs: Vec<NodeSelectorRequirement>) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                weight,
                preference: NodeSelectorTerm {
                    match_expressions: Some(exprs),
                    match_fields: None,
                },
            });
        self
    }
    /// Adds a topology spread constraint selecting pods with `key` present
    /// (`st.MakePod().SpreadConstraint(maxSkew, key, when, Exists(label))`).
    pub fn spread(
        mut self,
        max_skew: i32,
        topology_key: &str,
        when: &str,
        selector: Option<LabelSelector>,
    ) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: topology_key.into(),
                when_unsatisfiable: when.into(),
                label_selector: selector,
                ..Default::default()
            });
        self
    }
    pub fn spread_min_domains(mut self, min_domains: i32) -> Self {
        if let Some(c) = self
            .spec()
            .topology_spread_constraints
            .as_mut()
            .and_then(|c| c.last_mut())
        {
            c.min_domains = Some(min_domains);
        }
        self
    }
    pub fn obj(self) -> Pod {
        self.0
    }
}

pub fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
    }
}

/// A selector requiring label `key` to exist (`st.MakeLabelSelector().Exists(key)`).
pub fn exists(key: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_expressions: Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                key: key.into(),
                operator: "Exists".into(),
                values: None,
            },
        ]),
        match_labels: None,
    })
}

/// A selector on one label value.
pub fn label_eq(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(string_map(&[(key, value)])),
        match_expressions: None,
    }
}

/// A snapshot holding these nodes and bound pods.
pub fn snapshot(nodes: &[Node], pods: &[Pod]) -> bosun_scheduler::Snapshot {
    let mut s = bosun_scheduler::Snapshot::new();
    for n in nodes {
        s.upsert_node(n).unwrap_or_else(|e| panic!("node: {e}"));
    }
    for p in pods {
        s.upsert_pod(p).unwrap_or_else(|e| panic!("pod: {e}"));
    }
    s
}

/// Bound pods get distinct uids from a counter, as `st.MakePod()` pods are distinct objects.
pub fn bound(n: usize, node: &str) -> PodBuilder {
    pod(&format!("{node}-p{n}")).node(node)
}

pub fn prepared(pod: &Pod) -> bosun_scheduler::PreparedPod {
    bosun_scheduler::PreparedPod::new(pod, None).unwrap_or_else(|e| panic!("prepare: {e}"))
}
