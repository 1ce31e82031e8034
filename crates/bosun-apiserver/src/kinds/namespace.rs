//! Namespaces (`pkg/registry/core/namespace`): the `kubernetes.io/metadata.name` label, the
//! `kubernetes` finalizer in `spec.finalizers` from creation, the built-in namespaces that
//! cannot be deleted, and the lifecycle of a deleted one: `Terminating` until
//! `spec.finalizers` is empty (the controller-manager's namespace controller empties it and
//! removes `kubernetes` through the `finalize` subresource) and `metadata.finalizers` too.

use bosun_api::field::FieldError;
use bosun_api::resources::{NAMESPACES, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

use super::validation as v;
use super::{Part, Strategy};
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::error::{ApiResult, Status};
use crate::merge::schema::{OBJECT_META, OPAQUE, Schema, field, keyed};

/// Namespaces that exist from the start and cannot be deleted.
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The finalizer of the namespace controller (`v1.FinalizerKubernetes`).
pub const FINALIZER: &str = "kubernetes";

fn spec_finalizers(obj: &Value) -> usize {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The namespace kind.
#[derive(Debug)]
pub struct Namespace;

/// `v1.NamespaceStatus`.
static STATUS: Schema = Schema::new(&[keyed("conditions", "type", &OPAQUE)]);

static MERGE: Schema = Schema::new(&[field("metadata", &OBJECT_META), field("status", &STATUS)]);

impl Strategy for Namespace {
    type Object = api::Namespace;

    fn resource(&self) -> &'static Resource {
        &NAMESPACES
    }

    fn default(&self, obj: &mut api::Namespace) {
        v::default_namespace(obj);
    }

    fn validate(&self, obj: &api::Namespace) -> Vec<FieldError> {
        v::validate_namespace(obj)
    }

    fn validate_update(&self, new: &api::Namespace, _old: &api::Namespace) -> Vec<FieldError> {
        v::validate_namespace(new)
    }

    /// Every namespace carries its name as the `kubernetes.io/metadata.name` label, and the
    /// `kubernetes` finalizer (Kubernetes' `namespaceStrategy.PrepareForCreate`).
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            let spec = o.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                let fins = s.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(f) = fins.as_array_mut()
                    && !f.iter().any(|x| x == FINALIZER)
                {
                    f.push(json!(FINALIZER));
                }
            }
        }
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

    /// An update keeps `spec.finalizers` (only `finalize` changes them) and the status (only
    /// `status` changes it); `status` keeps the spec; `finalize` changes only the finalizers.
    fn prepare_for_update(&self, new: &mut Value, old: &Value, part: Part) {
        super::reset_status(&NAMESPACES, new, old, part);
        if part == Part::Main
            && let Some(o) = new.as_object_mut()
        {
            match old.pointer("/spec/finalizers") {
                Some(f) => {
                    let spec = o.entry("spec").or_insert_with(|| json!({}));
                    if let Some(s) = spec.as_object_mut() {
                        s.insert("finalizers".into(), f.clone());
                    }
                }
                None => {
                    if let Some(s) = o.get_mut("spec").and_then(Value::as_object_mut) {
                        s.remove("finalizers");
                    }
                }
            }
        }
    }

    fn table_columns(&self) -> &'static [Column] {
        &table::NAMESPACE_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::namespace_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &MERGE
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        Ok(protobuf::namespace(head, &pb::Namespace::decode(raw)?))
    }

    fn check_delete(&self, name: &str) -> ApiResult<()> {
        if PROTECTED_NAMESPACES.contains(&name) {
            return Err(Status::forbidden(
                &NAMESPACES,
                name,
                "this namespace may not be deleted",
            ));
        }
        Ok(())
    }

    /// The first delete of a namespace only marks it `Terminating`; later ones remove it
    /// once `spec.finalizers` is empty (Kubernetes' namespace `REST.Delete`).
    fn begin_termination(&self, obj: &mut Value) -> bool {
        let first = obj
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if obj.get("status").is_none_or(|s| !s.is_object()) {
            obj["status"] = json!({});
        }
        obj["status"]["phase"] = json!("Terminating");
        first || self.deletion_held(obj)
    }

    /// `spec.finalizers` holds a namespace being deleted.
    fn deletion_held(&self, obj: &Value) -> bool {
        spec_finalizers(obj) > 0
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn name_label_protection_and_termination() {
        let mut ns = json!({"metadata": {"name": "team-a", "labels": {"x": "1"}}});
        Namespace.prepare_for_create(&mut ns);
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"x": "1", "kubernetes.io/metadata.name": "team-a"})
        );
        for name in PROTECTED_NAMESPACES {
            let e = Namespace.check_delete(name).unwrap_err();
            assert_eq!((e.code, e.reason), (403, "Forbidden"));
            assert_eq!(
                e.message,
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
            );
        }
        assert!(Namespace.check_delete("kube-node-lease").is_ok());
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        // The first delete marks it; later ones remove it only once spec.finalizers is empty.
        assert!(Namespace.begin_termination(&mut ns));
        assert_eq!(ns["status"]["phase"], "Terminating");
        ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(Namespace.begin_termination(&mut ns));
        ns["spec"]["finalizers"] = json!([]);
        assert!(!Namespace.begin_termination(&mut ns));
        assert!(!Namespace.deletion_held(&ns));
    }

    #[test]
    fn finalizers_change_only_through_finalize() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"}});
        // A plain update can change neither spec.finalizers nor the status.
        let mut new = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"finalizers": []}, "status": {"phase": "Active"}});
        Namespace.prepare_for_update(&mut new, &old, Part::Main);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(new["status"]["phase"], "Terminating");
        assert_eq!(new["metadata"]["labels"]["x"], "1");
        // finalize changes spec.finalizers and nothing else.
        let mut new = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"finalizers": []}, "status": {"phase": "Active"}});
        Namespace.prepare_for_update(&mut new, &old, Part::Finalize);
        assert_eq!(new["spec"]["finalizers"], json!([]));
        assert_eq!(new["status"]["phase"], "Terminating");
        assert!(new["metadata"].get("labels").is_none());
        // status changes the status only.
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"finalizers": []},
            "status": {"phase": "Terminating", "conditions": []}});
        Namespace.prepare_for_update(&mut new, &old, Part::Status);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(new["status"]["conditions"], json!([]));
        assert!(Namespace.deletion_held(&new));
    }
}
