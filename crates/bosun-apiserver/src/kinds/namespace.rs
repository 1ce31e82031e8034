//! Namespaces: the `kubernetes.io/metadata.name` label, the built-in namespaces that cannot
//! be deleted, and the lifecycle of a deleted one (terminating until the apiserver has
//! emptied it; see the registry's `finalize_namespaces`).

use bosun_api::field::FieldError;
use bosun_api::resources::{NAMESPACES, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::error::{ApiResult, Status};
use crate::merge::schema::{OBJECT_META, OPAQUE, Schema, field, keyed};

/// Namespaces that exist from the start and cannot be deleted.
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

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

    /// Every namespace carries its name as the `kubernetes.io/metadata.name` label.
    fn prepare_for_create(&self, obj: &mut Value) {
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

    /// A deleted namespace is `Terminating` until it is empty.
    fn begin_termination(&self, obj: &mut Value) -> bool {
        obj["status"]["phase"] = json!("Terminating");
        true
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
        assert!(Namespace.begin_termination(&mut ns));
        assert_eq!(ns["status"]["phase"], "Terminating");
    }
}
