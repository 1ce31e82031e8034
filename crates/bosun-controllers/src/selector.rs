//! Matching a `LabelSelector` against a set of labels, as `metav1.LabelSelectorAsSelector`
//! followed by `Selector.Matches` does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector Kubernetes would refuse to convert (`LabelSelectorAsSelector` errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// An operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    Operator(String),
    /// In/NotIn without values, or Exists/DoesNotExist with values.
    #[error("values: Invalid value: {values:?}: {reason}")]
    Values {
        /// The values given.
        values: Vec<String>,
        /// Why they do not fit the operator.
        reason: &'static str,
    },
}

// replaced by bosun_api::selectors when merged
/// Whether `labels` satisfy `selector`. `None` selects nothing; a selector with neither
/// matchLabels nor matchExpressions selects everything (Kubernetes' `labels.Everything()`).
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, SelectorError> {
    let Some(selector) = selector else {
        return Ok(false);
    };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let mut all = true;
    for (k, v) in selector.match_labels.iter().flatten() {
        all &= labels.get(k) == Some(v);
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        let present = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(SelectorError::Values {
                        values: values.to_vec(),
                        reason: "for 'in', 'notin' operators, values set can't be empty",
                    });
                }
                let found = present.is_some_and(|v| values.contains(v));
                if req.operator == "In" { found } else { !found }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(SelectorError::Values {
                        values: values.to_vec(),
                        reason: "values set must be empty for exists and does not exist",
                    });
                }
                present.is_some() == (req.operator == "Exists")
            }
            other => return Err(SelectorError::Operator(other.to_string())),
        };
        all &= ok;
    }
    Ok(all)
}

/// Whether the selector has neither matchLabels nor matchExpressions (selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::labels;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn nil_selects_nothing_and_empty_selects_everything() {
        let l = labels(&[("a", "b")]);
        assert_eq!(matches(None, Some(&l)), Ok(false));
        assert_eq!(matches(Some(&LabelSelector::default()), Some(&l)), Ok(true));
        assert_eq!(matches(Some(&LabelSelector::default()), None), Ok(true));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["front", "edge"]),
                expr("canary", "DoesNotExist", &[]),
                expr("zone", "NotIn", &["bad"]),
            ]),
        };
        let ok = labels(&[("app", "web"), ("tier", "edge")]);
        assert_eq!(matches(Some(&sel), Some(&ok)), Ok(true));
        let canary = labels(&[("app", "web"), ("tier", "edge"), ("canary", "1")]);
        assert_eq!(matches(Some(&sel), Some(&canary)), Ok(false));
        let bad_zone = labels(&[("app", "web"), ("tier", "edge"), ("zone", "bad")]);
        assert_eq!(matches(Some(&sel), Some(&bad_zone)), Ok(false));
        let no_tier = labels(&[("app", "web")]);
        assert_eq!(matches(Some(&sel), Some(&no_tier)), Ok(false));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("a", "In", &[])]),
            ..Default::default()
        };
        assert!(matches(Some(&sel), None).is_err());
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", &["x"])]),
            ..Default::default()
        };
        assert!(matches(Some(&sel), None).is_err());
        let sel = LabelSelector {
            match_expressions: Some(vec![expr("a", "Gt", &["1"])]),
            ..Default::default()
        };
        assert_eq!(
            matches(Some(&sel), None),
            Err(SelectorError::Operator("Gt".into()))
        );
    }
}
