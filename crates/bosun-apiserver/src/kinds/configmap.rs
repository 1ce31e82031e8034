//! ConfigMaps: configuration a pod reads as environment variables or files.

use bosun_api::field::{FieldError, forbidden, invalid_str, too_long};
use bosun_api::names::{max_len_error, regex_error};
use bosun_api::resources::{CONFIGMAPS, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{METADATA_ONLY, Schema};

/// `core.MaxSecretSize`: the most a ConfigMap's or a Secret's values may hold together.
pub(super) const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The update errors of an object stored with `immutable: true` (`old`): unsetting the
/// flag, and each of `changed` (field, whether it differs).
pub(super) fn immutable_errors(
    old: Option<bool>,
    new: Option<bool>,
    changed: &[(&str, bool)],
) -> Vec<FieldError> {
    const MESSAGE: &str = "field is immutable when `immutable` is set";
    if old != Some(true) {
        return Vec::new();
    }
    let flag = (new != Some(true)).then(|| forbidden("immutable", MESSAGE));
    flag.into_iter()
        .chain(
            changed
                .iter()
                .filter(|(_, differs)| *differs)
                .map(|(field, _)| forbidden(*field, MESSAGE)),
        )
        .collect()
}

/// The ConfigMap kind.
#[derive(Debug)]
pub struct ConfigMap;

impl Strategy for ConfigMap {
    type Object = api::ConfigMap;

    fn resource(&self) -> &'static Resource {
        &CONFIGMAPS
    }

    fn default(&self, _obj: &mut api::ConfigMap) {}

    fn validate(&self, obj: &api::ConfigMap) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, new: &api::ConfigMap, old: &api::ConfigMap) -> Vec<FieldError> {
        let mut errs = v::validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(immutable_errors(
            old.immutable,
            new.immutable,
            &[
                ("data", new.data != old.data),
                ("binaryData", new.binary_data != old.binary_data),
            ],
        ));
        errs.extend(validate(new));
        errs
    }

    fn prepare_for_create(&self, _obj: &mut Value) {}

    fn table_columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    /// Its keys counted over `data` and `binaryData`.
    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let keys = table::keys_at(obj, &["data"]) + table::keys_at(obj, &["binaryData"]);
        vec![table::name_of(obj), json!(keys), table::age_of(obj, now)]
    }

    fn merge_schema(&self) -> &'static Schema {
        &METADATA_ONLY
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        let c = pb::ConfigMap::decode(raw)?;
        Ok(head
            .obj("metadata", &c.metadata, protobuf::object_meta)
            .bool_ptr("immutable", c.immutable)
            .map("data", &c.data)
            .bytes_map("binaryData", &c.binary_data)
            .done())
    }
}

/// `kubectl get configmaps`: Name, Data, Age.
static COLUMNS: [Column; 3] = [
    table::col("Name", "string", "name", table::DESC_NAME, 0),
    table::col(
        "Data",
        "string",
        "",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
        0,
    ),
    table::col("Age", "string", "", table::DESC_CREATED, 0),
];

/// `ValidateConfigMap`: the name, every key, no key in both `data` and `binaryData`, at most
/// 1 MiB of values.
fn validate(cm: &api::ConfigMap) -> Vec<FieldError> {
    let mut errs = v::validate_object_meta(&cm.metadata, true, v::name_is_dns_subdomain);
    let binary = cm.binary_data.as_ref();
    let mut total = 0;
    for (key, value) in cm.data.iter().flatten() {
        let field = format!("data[{key}]");
        for m in key_errors(key) {
            errs.push(invalid_str(field.as_str(), key, &m));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(invalid_str(
                field.as_str(),
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += value.len();
    }
    for (key, value) in binary.into_iter().flatten() {
        for m in key_errors(key) {
            errs.push(invalid_str(format!("binaryData[{key}]"), key, &m));
        }
        total += value.0.len();
    }
    if total > MAX_DATA_BYTES {
        errs.push(too_long("", MAX_DATA_BYTES));
    }
    errs
}

/// `IsConfigMapKey`: what a key of a ConfigMap or a Secret may be (it becomes a file name).
pub(super) fn key_errors(key: &str) -> Vec<String> {
    const MAX: usize = 253;
    let mut errs = Vec::new();
    if key.len() > MAX {
        errs.push(max_len_error(MAX));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if key.is_empty() || !key.chars().all(valid_char) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kinds::{FieldValidation, Kind};
    use serde_json::json;

    fn create(obj: Value) -> Result<Value, crate::error::Status> {
        let mut o = obj;
        ConfigMap.decode_create(&mut o, FieldValidation::Strict)?;
        Ok(o)
    }

    #[test]
    fn keys_sizes_and_duplicates_as_kubernetes_checks_them() {
        let ok = create(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"app.conf": "x=1", "KEY_2": "y"}, "binaryData": {"logo.png": "iVBO"}}))
        .unwrap();
        assert_eq!(ok.pointer("/data/app.conf"), Some(&json!("x=1")));
        assert_eq!(ok.pointer("/binaryData/logo.png"), Some(&json!("iVBO")));

        let e = create(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a/b": "x", "..hidden": "y", "same": "z"}, "binaryData": {"same": "AA=="}}))
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message.contains("data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("data[..hidden]: Invalid value: \"..hidden\": must not start with '..'"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(
                "data[same]: Invalid value: \"same\": duplicate of key present in binaryData"
            ),
            "{}",
            e.message
        );

        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let e = create(json!({"metadata": {"name": "big", "namespace": "default"},
            "data": {"k": big}}))
        .unwrap_err();
        assert!(e.message.contains("Too long"), "{}", e.message);
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data() {
        let old = create(json!({"metadata": {"name": "cfg", "namespace": "default"},
            "data": {"k": "v"}, "immutable": true}))
        .unwrap();
        let mut new = old.clone();
        new["data"]["k"] = json!("changed");
        let e = ConfigMap
            .decode_update(&mut new, &old, FieldValidation::Strict)
            .unwrap_err();
        assert!(
            e.message
                .contains("data: Forbidden: field is immutable when `immutable` is set"),
            "{}",
            e.message
        );
        let mut new = old.clone();
        new["immutable"] = json!(false);
        let e = ConfigMap
            .decode_update(&mut new, &old, FieldValidation::Strict)
            .unwrap_err();
        assert!(e.message.contains("immutable: Forbidden"), "{}", e.message);
        // Labels may still change.
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        ConfigMap
            .decode_update(&mut new, &old, FieldValidation::Strict)
            .unwrap();
    }
}
