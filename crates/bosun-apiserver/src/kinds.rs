//! Kind-specific hooks: decoding into the `k8s-openapi` types, defaulting, validation, and
//! what a create sets that the client does not send.
//!
//! Storage works on JSON ([`serde_json::Value`]); these hooks round-trip an object through
//! its typed form, which also drops fields the type does not have (or rejects them when the
//! client asked for strict field validation, as `kubectl create` does).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiResult, Status};
use crate::validation as v;
use bosun_api::field::FieldError;
use bosun_api::resources::Resource;

/// How to treat fields the type does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the default).
    #[default]
    Warn,
    /// Reject the request.
    Strict,
}

impl FieldValidation {
    /// Parses the `fieldValidation` query parameter.
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(Status::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// The result of preparing an object: warnings for the client (`Warning` headers).
pub type Warnings = Vec<String>;

/// Decodes, defaults and validates a new object; replaces `obj` with the typed form.
pub fn prepare_create(res: &Resource, obj: &mut Value, fv: FieldValidation) -> ApiResult<Warnings> {
    match res.kind {
        "Pod" => typed::<Pod>(res, obj, None, fv, |p, _| {
            v::default_pod(p);
            v::validate_pod(p)
        }),
        "Deployment" => typed::<Deployment>(res, obj, None, fv, |d, _| {
            v::default_deployment(d);
            v::validate_deployment(d)
        }),
        "ReplicaSet" => typed::<ReplicaSet>(res, obj, None, fv, |r, _| {
            v::default_replicaset(r);
            v::validate_replicaset(r)
        }),
        "Namespace" => typed::<Namespace>(res, obj, None, fv, |n, _| {
            v::default_namespace(n);
            v::validate_namespace(n)
        }),
        "Node" => typed::<Node>(res, obj, None, fv, |n, _| {
            v::default_node(n);
            v::validate_node(n)
        }),
        "Event" => typed::<Event>(res, obj, None, fv, |e, _| v::validate_event(e)),
        "Lease" => typed::<Lease>(res, obj, None, fv, |l, _| v::validate_lease(l)),
        _ => Ok(Vec::new()),
    }
}

/// Decodes, defaults and validates an update of `old` into `new`.
pub fn prepare_update(
    res: &Resource,
    new: &mut Value,
    old: &Value,
    fv: FieldValidation,
) -> ApiResult<Warnings> {
    match res.kind {
        "Pod" => typed::<Pod>(res, new, Some(old), fv, |p, o| {
            v::default_pod(p);
            match o {
                Some(o) => v::validate_pod_update(p, o),
                None => v::validate_pod(p),
            }
        }),
        "Deployment" => typed::<Deployment>(res, new, Some(old), fv, |d, o| {
            v::default_deployment(d);
            match o {
                Some(o) => v::validate_deployment_update(d, o),
                None => v::validate_deployment(d),
            }
        }),
        "ReplicaSet" => typed::<ReplicaSet>(res, new, Some(old), fv, |r, o| {
            v::default_replicaset(r);
            match o {
                Some(o) => v::validate_replicaset_update(r, o),
                None => v::validate_replicaset(r),
            }
        }),
        _ => prepare_create(res, new, fv),
    }
}

fn typed<T: Serialize + DeserializeOwned>(
    res: &Resource,
    obj: &mut Value,
    old: Option<&Value>,
    fv: FieldValidation,
    check: impl FnOnce(&mut T, Option<&T>) -> Vec<FieldError>,
) -> ApiResult<Warnings> {
    let decode_err = |e: serde_json::Error| {
        Status::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            res.kind, res.version, res.kind, e
        ))
    };
    let mut t = T::deserialize(&*obj).map_err(decode_err)?;
    let round = serde_json::to_value(&t).map_err(|e| Status::internal(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &round, "", &mut unknown);
    let unknown: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    let warnings = match fv {
        FieldValidation::Strict if !unknown.is_empty() => {
            return Err(Status::bad_request(format!(
                "strict decoding error: {}",
                unknown.join(", ")
            )));
        }
        FieldValidation::Warn => unknown,
        _ => Vec::new(),
    };
    let old_t: Option<T> = match old {
        Some(o) => Some(T::deserialize(o).map_err(decode_err)?),
        None => None,
    };
    let errors = check(&mut t, old_t.as_ref());
    if !errors.is_empty() {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Err(Status::invalid_object(res, &name, &errors));
    }
    *obj = serde_json::to_value(&t).map_err(|e| Status::internal(e.to_string()))?;
    Ok(warnings)
}

/// Collects the paths present (and not null) in `sent` but absent from `kept`.
fn unknown_fields(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    const MAX: usize = 20;
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, sv) in s {
                if out.len() >= MAX {
                    return;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    None if !sv.is_null() => out.push(p),
                    Some(kv) => unknown_fields(sv, kv, &p, out),
                    None => {}
                }
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (sv, kv)) in s.iter().zip(k).enumerate() {
                unknown_fields(sv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What a create sets beyond defaulting: a fresh status for pods (Pending, QoS class) and
/// workloads, the namespace's name label.
pub fn on_create(res: &Resource, obj: &mut Value) {
    match res.kind {
        // The status of a new pod is the apiserver's, not the client's (as in Kubernetes).
        "Pod" => {
            let qos = qos_class(obj);
            if let Some(o) = obj.as_object_mut() {
                o.insert(
                    "status".into(),
                    json!({"phase": "Pending", "qosClass": qos}),
                );
            }
        }
        "Deployment" | "ReplicaSet" => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        "Namespace" => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(Value::Object(m)) = obj.get_mut("metadata") {
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Value::Object(l) = labels {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        _ => {}
    }
}

/// A pod's QoS class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let has = |m: Option<&serde_json::Map<String, Value>>, k: &str| {
            m.is_some_and(|m| m.contains_key(k))
        };
        for r in ["cpu", "memory"] {
            if has(req, r) || has(lim, r) {
                any = true;
            }
            let (rq, lm) = (req.and_then(|m| m.get(r)), lim.and_then(|m| m.get(r)));
            if lm.is_none() || (rq.is_some() && rq != lm) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bosun_api::resources::by_plural;

    #[test]
    fn strict_rejects_unknown_fields_and_warn_drops_them() {
        let res = by_plural("pods").unwrap();
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"default"},
            "spec":{"containers":[{"name":"c","image":"busybox","bogus":1}],"extra":true}});
        let mut o = pod.clone();
        let e = prepare_create(res, &mut o, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("unknown field \"spec.containers[0].bogus\""),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("unknown field \"spec.extra\""),
            "{}",
            e.message
        );
        let mut o = pod.clone();
        let w = prepare_create(res, &mut o, FieldValidation::Warn).unwrap();
        assert_eq!(w.len(), 2);
        assert!(o.pointer("/spec/extra").is_none());
        // Defaulted.
        assert_eq!(o.pointer("/spec/restartPolicy"), Some(&json!("Always")));
    }

    #[test]
    fn invalid_objects_get_422_with_causes() {
        let res = by_plural("pods").unwrap();
        let mut o = json!({"metadata":{"name":"a","namespace":"default"},
            "spec":{"containers":[{"name":"c"}]}});
        let e = prepare_create(res, &mut o, FieldValidation::Strict).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let causes = &e.details.as_ref().unwrap().causes;
        assert!(
            causes
                .iter()
                .any(|c| c.field == "spec.containers[0].image" && c.reason == "FieldValueRequired")
        );
        assert!(
            e.message.starts_with("Pod \"a\" is invalid: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn qos_classes() {
        let be = json!({"spec":{"containers":[{"name":"a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g =
            json!({"spec":{"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec":{"containers":[{"resources":{"requests":{"cpu":"1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
