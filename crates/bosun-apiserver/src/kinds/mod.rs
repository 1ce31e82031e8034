//! The kinds the apiserver serves, one file each, behind one trait: a kind's [`Strategy`]
//! (as Kubernetes calls it) decides everything that differs between kinds: its type and row
//! of the resource table, defaulting and validation (`validation.rs`), what a create or
//! update resets, its table columns (`encoding/table.rs`), merge keys (`merge/schema.rs`),
//! protobuf decoding (`encoding/protobuf.rs`), and its storage hooks (graceful deletion,
//! the namespace lifecycle, expiry, ...).
//!
//! The registry, the REST and gRPC front ends, discovery and OpenAPI reach a kind only
//! through [`Kind`] (object-safe, implemented for every strategy) and the one table,
//! [`KINDS`]. Adding a kind is one file here implementing [`Strategy`] (the compiler lists
//! what it must decide) and one row in [`KINDS`], next to its row of
//! `bosun_api::resources`.
//!
//! Objects travel as JSON ([`serde_json::Value`]); creates and updates round-trip them
//! through the kind's typed form, which applies defaults and validation and drops fields the
//! type does not have (or rejects them when the client asked for strict field validation, as
//! `kubectl create` does).

mod configmap;
mod deployment;
mod event;
mod lease;
mod namespace;
mod node;
mod pod;
mod replicaset;
mod secret;
pub mod validation;

use bosun_api::field::FieldError;
use bosun_api::resources::Resource;
use jiff::Timestamp;
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::schemars::SchemaGenerator;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::encoding::protobuf::{self, DecodeError};
use crate::encoding::table::Column;
use crate::error::{ApiResult, Status};
use crate::merge::schema::Schema;

/// Every served kind, in discovery order: the same order and rows as
/// `bosun_api::resources::RESOURCES` (a unit test holds them together).
pub static KINDS: &[&dyn Kind] = &[
    &namespace::Namespace,
    &node::Node,
    &pod::Pod,
    &event::Event,
    &configmap::ConfigMap,
    &secret::Secret,
    &deployment::Deployment,
    &replicaset::ReplicaSet,
    &lease::Lease,
];

/// The served kinds.
pub fn all() -> impl Iterator<Item = &'static dyn Kind> {
    KINDS.iter().copied()
}

/// The kind served as this plural name in this group and version.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static dyn Kind> {
    all().find(|k| {
        let r = k.resource();
        r.group == group && r.version == version && r.plural == plural
    })
}

/// The kind served as this plural name (plural names are unique among served kinds).
pub fn by_plural(plural: &str) -> Option<&'static dyn Kind> {
    all().find(|k| k.resource().plural == plural)
}

/// The kind of this name (`Pod`).
pub fn by_kind(kind: &str) -> Option<&'static dyn Kind> {
    all().find(|k| k.resource().kind == kind)
}

/// The namespace kind, whose objects the registry reads for every namespaced write.
pub fn namespaces() -> &'static dyn Kind {
    &namespace::Namespace
}

/// The node kind, whose status says where a pod's kubelet is.
pub fn nodes() -> &'static dyn Kind {
    &node::Node
}

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

/// Which part of an object an update addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object (its status is kept when status is a subresource).
    Main,
    /// Only `status`.
    Status,
    /// Only `spec.finalizers` (a namespace's `finalize` subresource).
    Finalize,
}

impl Part {
    /// From a subresource name.
    pub fn from_subresource(res: &Resource, sub: &str) -> ApiResult<Part> {
        match sub {
            "" => Ok(Part::Main),
            "status" if res.status_subresource => Ok(Part::Status),
            "finalize" if res.has_subresource("finalize") => Ok(Part::Finalize),
            other => Err(Status::bad_request(format!(
                "subresource {other} of {} is not updatable this way",
                res.qualified()
            ))),
        }
    }
}

/// What a kind decides. Each kind's file implements it once; everything else reaches the
/// kind through [`Kind`]. Items without a default are what every kind must decide.
pub trait Strategy: Send + Sync + 'static {
    /// The kind's `k8s-openapi` type: objects are decoded into it to be defaulted and
    /// validated, and its schema is the kind's OpenAPI schema.
    type Object: Serialize + DeserializeOwned + JsonSchema;

    /// The kind's row of the resource table.
    fn resource(&self) -> &'static Resource;

    /// Applies Kubernetes' defaults (`SetDefaults_<Kind>`) to a new or updated object.
    fn default(&self, obj: &mut Self::Object);

    /// The field errors of a new object (already defaulted).
    fn validate(&self, obj: &Self::Object) -> Vec<FieldError>;

    /// The field errors of an update of `old` into `new` (`new` already defaulted).
    fn validate_update(&self, new: &Self::Object, old: &Self::Object) -> Vec<FieldError>;

    /// What a create sets that the client does not send, before defaulting (Kubernetes'
    /// `PrepareForCreate`): a fresh status, labels the server owns.
    fn prepare_for_create(&self, obj: &mut Value);

    /// What an update keeps from the stored object `old`, before defaulting (Kubernetes'
    /// `PrepareForUpdate`). By default the status subresource's rule: an update of the
    /// object keeps the stored status, and an update of `status` changes nothing else.
    fn prepare_for_update(&self, new: &mut Value, old: &Value, part: Part) {
        reset_status(self.resource(), new, old, part);
    }

    /// The columns of the kind's table (`kubectl get`), wide ones included.
    fn table_columns(&self) -> &'static [Column];

    /// One object's row of the table, a cell per column; `now` for ages.
    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value>;

    /// The `conditions` of an object's table row, when the kind sets any.
    fn table_row_conditions(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// The kind's merge keys for strategic merge patch.
    fn merge_schema(&self) -> &'static Schema;

    /// The kind's JSON from its Kubernetes protobuf message `raw` (`k8s-pb`), after `head`
    /// (which holds `kind` and `apiVersion`).
    fn decode_protobuf(&self, head: protobuf::Obj, raw: &[u8]) -> Result<Value, DecodeError>;

    /// Seconds a delete of `obj` waits for its holder to finish (graceful deletion, with
    /// the client's `gracePeriodSeconds` if any); 0 deletes at once.
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Refuses the deletion of objects that must stay.
    fn check_delete(&self, _name: &str) -> ApiResult<()> {
        Ok(())
    }

    /// Whether a delete leaves the object terminating (the namespace lifecycle: the first
    /// delete only marks it, and it stays while `spec.finalizers` is not empty), marking
    /// `obj` so. `obj` is the stored object, its `deletionTimestamp` not yet set by this
    /// delete.
    fn begin_termination(&self, _obj: &mut Value) -> bool {
        false
    }

    /// Whether something besides `metadata.finalizers` still holds an object being deleted
    /// (a namespace's `spec.finalizers`): the last metadata finalizer removed then does not
    /// remove it.
    fn deletion_held(&self, _obj: &Value) -> bool {
        false
    }

    /// Whether a delete answers with the deleted object rather than a `Status` (Kubernetes'
    /// `ReturnDeletedObject`).
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// Whether objects expire `--event-ttl` after they are created, through a store lease.
    fn expires(&self) -> bool {
        false
    }
}

/// A served kind, as the registry and the front ends use it (object-safe; implemented for
/// every [`Strategy`]).
pub trait Kind: Send + Sync {
    /// The kind's row of the resource table.
    fn resource(&self) -> &'static Resource;

    /// Decodes a new object into the kind's type, defaults and validates it, and replaces
    /// the JSON with the typed form's.
    fn decode_create(&self, obj: &mut Value, fv: FieldValidation) -> ApiResult<Warnings>;

    /// Decodes an update of `old` into `new`, defaults and validates it, and replaces `new`
    /// with the typed form's JSON.
    fn decode_update(
        &self,
        new: &mut Value,
        old: &Value,
        fv: FieldValidation,
    ) -> ApiResult<Warnings>;

    /// See [`Strategy::prepare_for_create`].
    fn prepare_for_create(&self, obj: &mut Value);

    /// See [`Strategy::prepare_for_update`].
    fn prepare_for_update(&self, new: &mut Value, old: &Value, part: Part);

    /// See [`Strategy::table_columns`].
    fn table_columns(&self) -> &'static [Column];

    /// See [`Strategy::table_cells`].
    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value>;

    /// See [`Strategy::table_row_conditions`].
    fn table_row_conditions(&self, obj: &Value) -> Option<Value>;

    /// See [`Strategy::merge_schema`].
    fn merge_schema(&self) -> &'static Schema;

    /// A Kubernetes protobuf request body (`k8s\0` and the envelope) as the kind's JSON.
    fn decode_protobuf(&self, body: &[u8]) -> Result<Value, DecodeError>;

    /// Adds the kind's schema (and those it refers to) to an OpenAPI document being built;
    /// returns its schema name.
    fn add_openapi_schema(&self, generator: &mut SchemaGenerator) -> String;

    /// See [`Strategy::deletion_grace`].
    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> i64;

    /// See [`Strategy::check_delete`].
    fn check_delete(&self, name: &str) -> ApiResult<()>;

    /// See [`Strategy::begin_termination`].
    fn begin_termination(&self, obj: &mut Value) -> bool;

    /// See [`Strategy::deletion_held`].
    fn deletion_held(&self, obj: &Value) -> bool;

    /// See [`Strategy::returns_deleted_object`].
    fn returns_deleted_object(&self) -> bool;

    /// See [`Strategy::expires`].
    fn expires(&self) -> bool;
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.resource().kind)
    }
}

impl<S: Strategy> Kind for S {
    fn resource(&self) -> &'static Resource {
        Strategy::resource(self)
    }

    fn decode_create(&self, obj: &mut Value, fv: FieldValidation) -> ApiResult<Warnings> {
        typed::<S::Object>(self.resource(), obj, None, fv, |t, _| {
            self.default(t);
            self.validate(t)
        })
    }

    fn decode_update(
        &self,
        new: &mut Value,
        old: &Value,
        fv: FieldValidation,
    ) -> ApiResult<Warnings> {
        typed::<S::Object>(self.resource(), new, Some(old), fv, |t, o| {
            self.default(t);
            match o {
                Some(o) => self.validate_update(t, o),
                None => self.validate(t),
            }
        })
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        Strategy::prepare_for_create(self, obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value, part: Part) {
        Strategy::prepare_for_update(self, new, old, part);
    }

    fn table_columns(&self) -> &'static [Column] {
        Strategy::table_columns(self)
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        Strategy::table_cells(self, obj, now)
    }

    fn table_row_conditions(&self, obj: &Value) -> Option<Value> {
        Strategy::table_row_conditions(self, obj)
    }

    fn merge_schema(&self) -> &'static Schema {
        Strategy::merge_schema(self)
    }

    fn decode_protobuf(&self, body: &[u8]) -> Result<Value, DecodeError> {
        protobuf::decode(self.resource(), body, |head, raw| {
            Strategy::decode_protobuf(self, head, raw)
        })
    }

    fn add_openapi_schema(&self, generator: &mut SchemaGenerator) -> String {
        generator.subschema_for::<S::Object>();
        S::Object::schema_name().into_owned()
    }

    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> i64 {
        Strategy::deletion_grace(self, obj, requested)
    }

    fn check_delete(&self, name: &str) -> ApiResult<()> {
        Strategy::check_delete(self, name)
    }

    fn begin_termination(&self, obj: &mut Value) -> bool {
        Strategy::begin_termination(self, obj)
    }

    fn deletion_held(&self, obj: &Value) -> bool {
        Strategy::deletion_held(self, obj)
    }

    fn returns_deleted_object(&self) -> bool {
        Strategy::returns_deleted_object(self)
    }

    fn expires(&self) -> bool {
        Strategy::expires(self)
    }
}

/// Drops the client's status from a new object whose status is its controller's.
fn drop_status(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}

/// The status subresource's rule for an update (see [`Strategy::prepare_for_update`]).
fn reset_status(res: &Resource, new: &mut Value, old: &Value, part: Part) {
    match part {
        Part::Status => {
            let status = new.get("status").cloned();
            let mut n = old.clone();
            if let (Some(o), Some(s)) = (n.as_object_mut(), status) {
                o.insert("status".into(), s);
            }
            *new = n;
        }
        // `finalize` changes `spec.finalizers` and nothing else.
        Part::Finalize => {
            let fins = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(Value::Null);
            let mut n = old.clone();
            if let Some(o) = n.as_object_mut() {
                let spec = o.entry("spec").or_insert_with(|| serde_json::json!({}));
                if let Some(s) = spec.as_object_mut() {
                    match fins {
                        Value::Null => s.remove("finalizers"),
                        f => s.insert("finalizers".into(), f),
                    };
                }
            }
            *new = n;
        }
        Part::Main => {
            if res.status_subresource
                && let Some(o) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
        }
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
    unknown_fields(obj, &round, &mut String::new(), &mut unknown);
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

/// Collects the paths present (and not null) in `sent` but absent from `kept` (at most 20).
/// `path` is the path so far, extended and restored in place: a path string is made only for
/// an unknown field.
fn unknown_fields(sent: &Value, kept: &Value, path: &mut String, out: &mut Vec<String>) {
    const MAX: usize = 20;
    let len = path.len();
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, sv) in s {
                if out.len() >= MAX {
                    return;
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    None if !sv.is_null() => out.push(path.clone()),
                    Some(kv) => unknown_fields(sv, kv, path, out),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (sv, kv)) in s.iter().zip(k).enumerate() {
                use std::fmt::Write;
                let _ = write!(path, "[{i}]");
                unknown_fields(sv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_rejects_unknown_fields_and_warn_drops_them() {
        let res = by_plural("pods").unwrap();
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"default"},
            "spec":{"containers":[{"name":"c","image":"busybox","bogus":1}],"extra":true}});
        let mut o = pod.clone();
        let e = res
            .decode_create(&mut o, FieldValidation::Strict)
            .unwrap_err();
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
        let w = res.decode_create(&mut o, FieldValidation::Warn).unwrap();
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
        let e = res
            .decode_create(&mut o, FieldValidation::Strict)
            .unwrap_err();
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

    /// The served kinds are the rows of the resource table, in its order, each once.
    #[test]
    fn every_row_of_the_resource_table_has_its_kind() {
        let rows: Vec<&Resource> = all().map(|k| k.resource()).collect();
        assert_eq!(rows.len(), bosun_api::resources::RESOURCES.len());
        for (k, r) in rows.iter().zip(bosun_api::resources::RESOURCES) {
            assert!(std::ptr::eq(*k, *r), "{} out of order", r.plural);
            assert!(find(r.group, r.version, r.plural).is_some());
            assert!(by_kind(r.kind).is_some_and(|k| std::ptr::eq(k.resource(), *r)));
        }
        assert!(find("apps", "v1", "pods").is_none());
        assert!(std::ptr::eq(
            namespaces().resource(),
            &bosun_api::resources::NAMESPACES
        ));
        assert!(std::ptr::eq(
            nodes().resource(),
            &bosun_api::resources::NODES
        ));
    }

    /// What every kind provides fits together: a cell per column (wide ones included), a
    /// name column, metadata's merge keys, an OpenAPI schema named after the kind.
    #[test]
    fn every_kind_is_complete() {
        let mut generator =
            k8s_openapi::schemars::generate::SchemaSettings::openapi3().into_generator();
        for k in all() {
            let r = k.resource();
            let obj =
                json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
            let cols = k.table_columns();
            assert_eq!(
                k.table_cells(&obj, Timestamp::UNIX_EPOCH).len(),
                cols.len(),
                "{}",
                r.kind
            );
            assert!(cols.iter().any(|c| c.format == "name"), "{}", r.kind);
            let finalizers = crate::merge::strategic::list_strategy(
                k.merge_schema(),
                &["metadata", "finalizers"],
            );
            assert_eq!(
                finalizers,
                crate::merge::strategic::ListStrategy::MergePrimitives
            );
            let name = k.add_openapi_schema(&mut generator);
            assert!(name.ends_with(&format!(".{}", r.kind)), "{name}");
            // A body for the kind's endpoint that is not protobuf is refused as such.
            assert!(matches!(
                k.decode_protobuf(b"{}"),
                Err(DecodeError::NotProtobuf)
            ));
        }
    }
}
