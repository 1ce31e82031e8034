//! Mutating admission on create: `DefaultTolerationSeconds`
//! (`plugin/pkg/admission/defaulttolerationseconds`). A new pod that does not already
//! tolerate the `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable` NoExecute
//! taints gets a toleration of each (operator Exists, effect NoExecute) for the configured
//! seconds, 300 by default: the time the node lifecycle controller leaves it on a node that
//! stopped reporting before evicting it.

use serde_json::{Value, json};

/// The taint the node lifecycle controller puts on a node whose Ready condition is False.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose Ready condition is Unknown.
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// kube-apiserver's default of both `--default-*-toleration-seconds` flags.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The admission settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// `--default-not-ready-toleration-seconds`.
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds`.
    pub unreachable_toleration_seconds: i64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            not_ready_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            unreachable_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
        }
    }
}

impl Admission {
    /// Admits a pod being created (JSON), adding the default tolerations it lacks.
    pub fn admit_pod(&self, pod: &mut Value) {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        let tolerations = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // A toleration with an empty key (or effect) matches every key (or effect).
        let tolerates = |taint: &str| {
            tolerations.iter().any(|t| {
                let key = t.get("key").and_then(Value::as_str).unwrap_or("");
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
        };
        let mut added = Vec::new();
        for (taint, seconds) in [
            (TAINT_NODE_NOT_READY, self.not_ready_toleration_seconds),
            (TAINT_NODE_UNREACHABLE, self.unreachable_toleration_seconds),
        ] {
            if !tolerates(taint) {
                added.push(json!({
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }));
            }
        }
        if added.is_empty() {
            return;
        }
        let mut all = tolerations;
        all.extend(added);
        spec.insert("tolerations".into(), Value::Array(all));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tolerations(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod.pointer("/spec/tolerations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn a_pod_without_tolerations_gets_both_with_the_configured_seconds() {
        let a = Admission {
            not_ready_toleration_seconds: 7,
            unreachable_toleration_seconds: 9,
        };
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        a.admit_pod(&mut pod);
        assert_eq!(
            tolerations(&pod),
            vec![
                (TAINT_NODE_NOT_READY.to_string(), Some(7)),
                (TAINT_NODE_UNREACHABLE.to_string(), Some(9)),
            ]
        );
        assert_eq!(pod["spec"]["tolerations"][0]["operator"], "Exists");
        assert_eq!(pod["spec"]["tolerations"][0]["effect"], "NoExecute");
    }

    #[test]
    fn a_pod_that_tolerates_a_taint_already_keeps_its_own() {
        let a = Admission::default();
        let mut pod = json!({"spec": {"tolerations": [
            {"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 3600}
        ]}});
        a.admit_pod(&mut pod);
        assert_eq!(
            tolerations(&pod),
            vec![
                (TAINT_NODE_UNREACHABLE.to_string(), Some(3600)),
                (TAINT_NODE_NOT_READY.to_string(), Some(300)),
            ]
        );
        // An empty key with no effect tolerates everything: nothing added.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        a.admit_pod(&mut all);
        assert_eq!(tolerations(&all).len(), 1);
        // A NoSchedule toleration of the key does not count.
        let mut ns = json!({"spec": {"tolerations": [
            {"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoSchedule"}
        ]}});
        a.admit_pod(&mut ns);
        assert_eq!(tolerations(&ns).len(), 3);
    }
}
