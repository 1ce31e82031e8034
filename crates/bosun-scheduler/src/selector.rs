//! Label selectors, as `metav1.LabelSelectorAsSelector` and `labels.Selector.Matches` read them.
//!
//! replaced by bosun_api::selectors when merged: this is the one small matcher the scheduler
//! needs (topology spreading counts the pods a constraint's selector picks).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::Error;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// The label is present with one of the values (`matchLabels` entries are `In` one value).
    In(String, Vec<String>),
    /// The label is absent or has none of the values.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    pub(crate) fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A parsed label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A nil selector (`labels.Nothing()`): matches nothing.
    Nothing,
    /// All requirements must hold; none at all is `labels.Everything()`.
    All(Vec<Requirement>),
}

impl Selector {
    /// `metav1.LabelSelectorAsSelector`.
    pub(crate) fn parse(selector: Option<&LabelSelector>) -> Result<Self, Error> {
        let Some(selector) = selector else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            reqs.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let invalid = |why: &str| Error::InvalidSelector(format!("{}: {why}", expr.key));
            let req = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(invalid(
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(invalid(
                        "values set must be empty for exists and does not exist",
                    ));
                }
                "In" => Requirement::In(expr.key.clone(), values),
                "NotIn" => Requirement::NotIn(expr.key.clone(), values),
                "Exists" => Requirement::Exists(expr.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(expr.key.clone()),
                op => {
                    return Err(invalid(&format!(
                        "{op:?} is not a valid label selector operator"
                    )));
                }
            };
            reqs.push(req);
        }
        Ok(Selector::All(reqs))
    }

    /// `labels.Selector.Matches`.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }

    /// `labels.Selector.Empty`: true only for a selector with no requirements (Everything).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Selector::All(reqs) if reqs.is_empty())
    }

    /// Adds a requirement (`Selector.Add`); adding to Nothing keeps Nothing.
    pub(crate) fn add(&mut self, req: Requirement) {
        if let Selector::All(reqs) = self {
            reqs.push(req);
        }
    }

    pub(crate) fn requirements(&self) -> &[Requirement] {
        match self {
            Selector::Nothing => &[],
            Selector::All(reqs) => reqs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn nil_matches_nothing_and_empty_matches_everything() {
        let nothing = Selector::parse(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!nothing.matches(&labels(&[])));
        assert!(!nothing.is_empty());
        let everything =
            Selector::parse(Some(&LabelSelector::default())).unwrap_or_else(|e| panic!("{e}"));
        assert!(everything.matches(&labels(&[("a", "b")])));
        assert!(everything.is_empty());
    }

    #[test]
    fn operators() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["prod"]),
                expr("team", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let s = Selector::parse(Some(&sel)).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("team", "x")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("team", "x")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "")
        ])));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        for e in [
            expr("a", "In", &[]),
            expr("a", "Exists", &["x"]),
            expr("a", "Gt", &["1"]),
        ] {
            let sel = LabelSelector {
                match_expressions: Some(vec![e]),
                ..Default::default()
            };
            assert!(Selector::parse(Some(&sel)).is_err());
        }
    }
}
