//! Node selectors and node affinity: component-helpers/scheduling/corev1/nodeaffinity
//! (`GetRequiredNodeAffinity`, `LazyErrorNodeSelector`, `PreferredSchedulingTerms`) and the
//! `labels.Requirement` operators they use (In, NotIn, Exists, DoesNotExist, Gt, Lt).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

use crate::Error;
use crate::node::NodeLabels;

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelReq {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

impl LabelReq {
    /// `labels.NewRequirement` through `nodeSelectorRequirementsAsSelector`; None is a parse
    /// error (the term then matches nothing).
    fn parse(r: &NodeSelectorRequirement) -> Option<LabelReq> {
        let values = r.values.clone().unwrap_or_default();
        let key = r.key.clone();
        let integer = |values: &[String]| match values {
            [v] => v.parse::<i64>().ok(),
            _ => None,
        };
        match r.operator.as_str() {
            "In" if !values.is_empty() => Some(LabelReq::In(key, values)),
            "NotIn" if !values.is_empty() => Some(LabelReq::NotIn(key, values)),
            "Exists" if values.is_empty() => Some(LabelReq::Exists(key)),
            "DoesNotExist" if values.is_empty() => Some(LabelReq::DoesNotExist(key)),
            "Gt" => integer(&values).map(|v| LabelReq::Gt(key, v)),
            "Lt" => integer(&values).map(|v| LabelReq::Lt(key, v)),
            _ => None,
        }
    }

    fn matches(&self, labels: &NodeLabels) -> bool {
        match self {
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            LabelReq::Exists(k) => labels.has(k),
            LabelReq::DoesNotExist(k) => !labels.has(k),
            LabelReq::Gt(k, bound) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *bound),
            LabelReq::Lt(k, bound) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *bound),
        }
    }
}

/// A field requirement: nodes have one field, `metadata.name`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldReq {
    key: String,
    equal: bool,
    value: String,
}

impl FieldReq {
    fn parse(r: &NodeSelectorRequirement) -> Option<FieldReq> {
        let value = match r.values.as_deref() {
            Some([v]) => v.clone(),
            _ => return None,
        };
        let equal = match r.operator.as_str() {
            "In" => true,
            "NotIn" => false,
            _ => return None,
        };
        Some(FieldReq {
            key: r.key.clone(),
            equal,
            value,
        })
    }

    fn matches(&self, node_name: &str) -> bool {
        let field = if self.key == "metadata.name" {
            node_name
        } else {
            ""
        };
        (field == self.value) == self.equal
    }
}

/// A parsed `NodeSelectorTerm`: its expressions and fields are ANDed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeTerm {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
    /// Some requirement did not parse: the term matches no node.
    parse_error: bool,
}

impl NodeTerm {
    /// None for an empty term, which selects nothing and is dropped.
    fn parse(term: &NodeSelectorTerm) -> Option<NodeTerm> {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels: Vec<_> = exprs.iter().map(LabelReq::parse).collect();
        let fields: Vec<_> = fields.iter().map(FieldReq::parse).collect();
        let parse_error = labels.iter().any(Option::is_none) || fields.iter().any(Option::is_none);
        Some(NodeTerm {
            labels: labels.into_iter().flatten().collect(),
            fields: fields.into_iter().flatten().collect(),
            parse_error,
        })
    }

    pub(crate) fn matches(&self, name: &str, labels: &NodeLabels) -> bool {
        !self.parse_error
            && self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|f| f.matches(name))
    }
}

/// `nodeaffinity.RequiredNodeAffinity`: the pod's nodeSelector and required node affinity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequiredAffinity {
    node_selector: Vec<(String, String)>,
    /// None without required node affinity; Some(empty) matches no node.
    terms: Option<Vec<NodeTerm>>,
}

impl RequiredAffinity {
    /// `GetRequiredNodeAffinity`.
    pub(crate) fn of(spec: &PodSpec) -> RequiredAffinity {
        let node_selector = spec
            .node_selector
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let terms =
            required_selector(spec).map(|terms| terms.iter().filter_map(NodeTerm::parse).collect());
        RequiredAffinity {
            node_selector,
            terms,
        }
    }

    /// True when neither a nodeSelector nor required affinity is set (the NodeAffinity filter
    /// has nothing to do: its PreFilter returns Skip).
    pub(crate) fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    /// `RequiredNodeAffinity.Match`, parse errors counting as no match.
    pub(crate) fn matches(&self, name: &str, labels: &NodeLabels) -> bool {
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_str()))
        {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(name, labels)),
        }
    }
}

fn required_selector(spec: &PodSpec) -> Option<&Vec<NodeSelectorTerm>> {
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|s| &s.node_selector_terms)
}

/// What NodeAffinity's PreFilter makes of `matchFields` on `metadata.name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeNames {
    /// Every node is a candidate.
    All,
    /// Only these nodes can match (every term names its nodes).
    Only(BTreeSet<String>),
    /// The terms name disjoint nodes: "pod affinity terms conflict".
    Conflict,
}

/// The node-name part of NodeAffinity's PreFilter.
pub(crate) fn node_names(spec: &PodSpec) -> NodeNames {
    let Some(terms) = required_selector(spec) else {
        return NodeNames::All;
    };
    if terms.is_empty() {
        return NodeNames::All;
    }
    let mut union: BTreeSet<String> = BTreeSet::new();
    for term in terms {
        let mut names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let set: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                names = Some(match names {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
        }
        match names {
            // A term without a node-name requirement: every node may match.
            None => return NodeNames::All,
            Some(names) => union.extend(names),
        }
    }
    if union.is_empty() {
        NodeNames::Conflict
    } else {
        NodeNames::Only(union)
    }
}

/// `PreferredSchedulingTerms`: weighted terms, weight-0 and empty terms dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PreferredTerms(Vec<(i64, NodeTerm)>);

impl PreferredTerms {
    /// None when the pod has no preferred node affinity (the score is skipped); an error when a
    /// term does not parse (Kubernetes then fails the scheduling cycle).
    pub(crate) fn of(spec: &PodSpec) -> Result<Option<PreferredTerms>, Error> {
        let Some(terms) = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
        else {
            return Ok(None);
        };
        let mut parsed = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            if t.weight == 0 {
                continue;
            }
            let Some(term) = NodeTerm::parse(&t.preference) else {
                continue;
            };
            if term.parse_error {
                return Err(Error::InvalidAffinity(format!(
                    "preferredDuringSchedulingIgnoredDuringExecution[{i}]: invalid requirement"
                )));
            }
            parsed.push((i64::from(t.weight), term));
        }
        Ok(Some(PreferredTerms(parsed)))
    }

    /// `PreferredSchedulingTerms.Score`: the sum of the weights of the matching terms.
    pub(crate) fn score(&self, name: &str, labels: &NodeLabels) -> i64 {
        self.0
            .iter()
            .filter(|(_, t)| t.matches(name, labels))
            .map(|(w, _)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn spec_with(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exprs(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> NodeLabels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn operators_follow_labels_requirement() {
        let node = labels(&[("zone", "a"), ("gpus", "4"), ("bad", "x")]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("missing", "NotIn", &["b"]), true),
            (req("zone", "Exists", &[]), true),
            (req("zone", "DoesNotExist", &[]), false),
            (req("gpus", "Gt", &["3"]), true),
            (req("gpus", "Gt", &["4"]), false),
            (req("gpus", "Lt", &["5"]), true),
            (req("bad", "Gt", &["1"]), false),
            (req("missing", "Lt", &["1"]), false),
            // Parse errors: the term matches nothing.
            (req("gpus", "Gt", &["x"]), false),
            (req("gpus", "Gt", &["1", "2"]), false),
            (req("zone", "In", &[]), false),
            (req("zone", "Exists", &["a"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (r, want) in cases {
            let a = RequiredAffinity::of(&spec_with(vec![exprs(vec![r.clone()])]));
            assert_eq!(a.matches("n", &node), want, "{r:?}");
        }
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let node = labels(&[("zone", "a")]);
        let a = RequiredAffinity::of(&spec_with(vec![
            exprs(vec![req("zone", "In", &["b"])]),
            exprs(vec![req("zone", "In", &["a"])]),
        ]));
        assert!(a.matches("n", &node));
        let empty = RequiredAffinity::of(&spec_with(vec![NodeSelectorTerm::default()]));
        assert!(!empty.matches("n", &node));
        let none = RequiredAffinity::of(&spec_with(vec![]));
        assert!(
            !none.matches("n", &node),
            "required affinity without terms matches no node"
        );
    }

    #[test]
    fn node_selector_and_affinity_must_both_match() {
        let mut spec = spec_with(vec![exprs(vec![req("zone", "In", &["a"])])]);
        spec.node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
        let a = RequiredAffinity::of(&spec);
        assert!(a.matches("n", &labels(&[("zone", "a"), ("disk", "ssd")])));
        assert!(!a.matches("n", &labels(&[("zone", "a")])));
    }

    #[test]
    fn match_fields_select_by_node_name() {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        let spec = spec_with(vec![term]);
        let a = RequiredAffinity::of(&spec);
        assert!(a.matches("n1", &labels(&[])));
        assert!(!a.matches("n2", &labels(&[])));
        assert_eq!(node_names(&spec), NodeNames::Only(["n1".to_owned()].into()));
    }

    // Cases from node_affinity_test.go TestPreFilterNodeAffinity (node names).
    #[test]
    fn prefilter_node_names() {
        let names = |vals: &[&str]| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", vals)]),
        };
        let both = |a: &[&str], b: &[&str]| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![
                req("metadata.name", "In", a),
                req("metadata.name", "In", b),
            ]),
        };
        let set = |v: &[&str]| NodeNames::Only(v.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(
            node_names(&spec_with(vec![names(&["n1", "n2"])])),
            set(&["n1", "n2"])
        );
        assert_eq!(
            node_names(&spec_with(vec![names(&["n1"]), names(&["n2"])])),
            set(&["n1", "n2"])
        );
        assert_eq!(
            node_names(&spec_with(vec![both(&["n1", "n2"], &["n2", "n3"])])),
            set(&["n2"])
        );
        assert_eq!(
            node_names(&spec_with(vec![both(&["n1"], &["n2"])])),
            NodeNames::Conflict
        );
        assert_eq!(
            node_names(&spec_with(vec![
                names(&["n1"]),
                exprs(vec![req("a", "Exists", &[])])
            ])),
            NodeNames::All
        );
    }
}
