//! The namespace controller's decisions (`pkg/controller/namespace/deletion/
//! namespaced_resources_deleter.go`), as pure functions of what a pass over a terminating
//! namespace's content found: the status conditions Kubernetes sets, with its reasons and
//! messages, how soon to look again, and the finalizers left once the content is gone.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The namespace controller's finalizer in `spec.finalizers` (`v1.FinalizerKubernetes`).
pub const FINALIZER: &str = "kubernetes";

/// Seconds Kubernetes assumes content with finalizers needs (`finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// What one pass of deleting a namespace's content found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Objects left after the deletes, per resource (`pods`, `deployments.apps`).
    pub remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
    /// Failed lists and deletes, as their messages.
    pub failures: Vec<String>,
    /// Seconds until the content is expected to be gone (the longest grace period of a
    /// terminating pod; [`FINALIZER_ESTIMATE_SECONDS`] for anything else left).
    pub estimate: i64,
}

impl Content {
    /// Records one object left after the deletes: `resource` is its group-qualified
    /// resource name, `obj` the object.
    pub fn record_remaining(&mut self, resource: &str, obj: &Value) {
        *self.remaining.entry(resource.to_string()).or_default() += 1;
        let fins = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for f in fins {
            *self.finalizers.entry(f.to_string()).or_default() += 1;
        }
        let grace = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        self.estimate = self.estimate.max(if grace > 0 {
            grace
        } else {
            FINALIZER_ESTIMATE_SECONDS
        });
    }

    /// Whether nothing is left and nothing failed: the namespace can be finalized.
    pub fn done(&self) -> bool {
        self.remaining.is_empty() && self.failures.is_empty()
    }

    /// Seconds to wait before the next pass (`estimate/2 + 1`, as the controller requeues).
    pub fn requeue_after_seconds(&self) -> u64 {
        u64::try_from(self.estimate / 2 + 1).unwrap_or(1)
    }
}

/// One namespace condition: type, status, reason, message.
pub type Condition = (&'static str, &'static str, &'static str, String);

fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The five deletion conditions, in Kubernetes' order, for what a pass found (the
/// discovery and group-version conditions are always fine: the resource table is known).
pub fn conditions(c: &Content) -> Vec<Condition> {
    let mut out: Vec<Condition> = vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
    ];
    out.push(if c.failures.is_empty() {
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        )
    } else {
        (
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                c.failures.len(),
                aggregate(&c.failures)
            ),
        )
    });
    out.push(if c.remaining.is_empty() {
        (
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let parts: Vec<String> = c
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        (
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        )
    });
    out.push(if c.finalizers.is_empty() {
        (
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let parts: Vec<String> = c
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        (
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        )
    });
    out
}

/// `status.conditions` with `new` set: a condition whose status, reason and message are
/// unchanged is kept as it is (its `lastTransitionTime` too); others get `now`. Conditions
/// of other types are kept.
pub fn merge_conditions(existing: &[Value], new: &[Condition], now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = existing
        .iter()
        .filter(|c| {
            let t = c.get("type").and_then(Value::as_str).unwrap_or("");
            !new.iter().any(|(nt, ..)| *nt == t)
        })
        .cloned()
        .collect();
    for (t, status, reason, message) in new {
        let same = existing.iter().find(|c| {
            c.get("type").and_then(Value::as_str) == Some(t)
                && c.get("status").and_then(Value::as_str) == Some(status)
                && c.get("reason").and_then(Value::as_str) == Some(reason)
                && c.get("message").and_then(Value::as_str) == Some(message.as_str())
        });
        out.push(match same {
            Some(c) => c.clone(),
            None => json!({"type": t, "status": status, "reason": reason,
                "message": message, "lastTransitionTime": now}),
        });
    }
    out
}

/// `spec.finalizers` without the controller's: what `finalize` is given once the content
/// is gone.
pub fn finalized(spec_finalizers: &[String]) -> Vec<String> {
    spec_finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_namespace_reports_success_and_is_finalized() {
        let c = Content::default();
        assert!(c.done());
        let conds = conditions(&c);
        let types: Vec<_> = conds.iter().map(|c| (c.0, c.1, c.2)).collect();
        assert_eq!(
            types,
            vec![
                (
                    "NamespaceDeletionDiscoveryFailure",
                    "False",
                    "ResourcesDiscovered"
                ),
                (
                    "NamespaceDeletionGroupVersionParsingFailure",
                    "False",
                    "ParsedGroupVersions"
                ),
                ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
                ("NamespaceContentRemaining", "False", "ContentRemoved"),
                (
                    "NamespaceFinalizersRemaining",
                    "False",
                    "ContentHasNoFinalizers"
                ),
            ]
        );
        assert_eq!(
            finalized(&["kubernetes".into(), "example.com/x".into()]),
            vec!["example.com/x".to_string()]
        );
    }

    #[test]
    fn remaining_content_and_finalizers_are_counted_as_kubernetes_words_them() {
        let mut c = Content::default();
        let held = json!({"metadata": {"finalizers": ["example.com/hold", "foregroundDeletion"]}});
        let pod = json!({"metadata": {"deletionGracePeriodSeconds": 30}});
        c.record_remaining("deployments.apps", &held);
        c.record_remaining("pods", &pod);
        c.record_remaining(
            "pods",
            &json!({"metadata": {"finalizers": ["example.com/hold"]}}),
        );
        assert!(!c.done());
        assert_eq!(c.estimate, 30);
        assert_eq!(c.requeue_after_seconds(), 16);
        let conds = conditions(&c);
        assert_eq!(
            conds[3],
            (
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                "Some resources are remaining: deployments.apps has 1 resource instances, pods has 2 resource instances".to_string()
            )
        );
        assert_eq!(
            conds[4],
            (
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances, foregroundDeletion in 1 resource instances".to_string()
            )
        );
        // Content with finalizers alone: Kubernetes' 15 s estimate.
        let mut f = Content::default();
        f.record_remaining("leases.coordination.k8s.io", &held);
        assert_eq!(f.requeue_after_seconds(), 8);
    }

    #[test]
    fn failures_are_aggregated() {
        let mut c = Content {
            failures: vec!["pods is forbidden".into()],
            ..Content::default()
        };
        assert!(!c.done());
        assert_eq!(
            conditions(&c)[2].3,
            "Failed to delete all resource types, 1 remaining: pods is forbidden"
        );
        c.failures.push("leases: timeout".into());
        assert_eq!(
            conditions(&c)[2],
            (
                "NamespaceDeletionContentFailure",
                "True",
                "ContentDeletionFailed",
                "Failed to delete all resource types, 2 remaining: [pods is forbidden, leases: timeout]".to_string()
            )
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = merge_conditions(
            &[json!({"type": "Other", "status": "True"})],
            &conditions(&Content::default()),
            "t1",
        );
        assert_eq!(first.len(), 6);
        assert_eq!(first[0]["type"], "Other");
        let mut c = Content::default();
        c.record_remaining("pods", &json!({"metadata": {}}));
        let second = merge_conditions(&first, &conditions(&c), "t2");
        let time = |v: &[Value], t: &str| {
            v.iter().find(|c| c["type"] == t).unwrap()["lastTransitionTime"].clone()
        };
        assert_eq!(time(&second, "NamespaceDeletionContentFailure"), "t1");
        assert_eq!(time(&second, "NamespaceContentRemaining"), "t2");
        assert_eq!(second.len(), 6);
    }
}
