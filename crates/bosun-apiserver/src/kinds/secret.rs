//! Secrets: data a pod reads as environment variables or files, kept apart from
//! ConfigMaps. `stringData` is write-only: it is merged into `data` on every write.

use std::collections::BTreeMap;

use bosun_api::field::{FieldError, invalid, invalid_str, required, too_long};
use bosun_api::resources::{Resource, SECRETS};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

use super::Strategy;
use super::configmap::{MAX_DATA_BYTES, immutable_errors, key_errors};
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{METADATA_ONLY, Schema};

/// The Secret kind.
#[derive(Debug)]
pub struct Secret;

impl Strategy for Secret {
    type Object = api::Secret;

    fn resource(&self) -> &'static Resource {
        &SECRETS
    }

    /// The v1 conversion's `stringData` merge (its values win over `data`'s), then
    /// `SetDefaults_Secret`: type Opaque.
    fn default(&self, obj: &mut api::Secret) {
        if let Some(strings) = obj.string_data.take() {
            let data = obj.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in strings {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
        if obj.type_.as_deref().unwrap_or_default().is_empty() {
            obj.type_ = Some("Opaque".into());
        }
    }

    fn validate(&self, obj: &api::Secret) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, new: &api::Secret, old: &api::Secret) -> Vec<FieldError> {
        let mut errs = v::validate_object_meta_update(&new.metadata, &old.metadata);
        if new.type_ != old.type_ {
            errs.push(invalid_str(
                "type",
                new.type_.as_deref().unwrap_or_default(),
                v::FIELD_IMMUTABLE_ERR,
            ));
        }
        // stringData needs no check: it was merged into data before validation.
        errs.extend(immutable_errors(
            old.immutable,
            new.immutable,
            &[("data", new.data != old.data)],
        ));
        errs.extend(validate(new));
        errs
    }

    fn prepare_for_create(&self, _obj: &mut Value) {}

    fn table_columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            table::name_of(obj),
            json!(table::str_at(obj, &["type"])),
            json!(table::keys_at(obj, &["data"])),
            table::age_of(obj, now),
        ]
    }

    fn merge_schema(&self) -> &'static Schema {
        &METADATA_ONLY
    }

    /// `stringData` is kept: [`Strategy::default`] merges it into `data`.
    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        let s = pb::Secret::decode(raw)?;
        Ok(head
            .obj("metadata", &s.metadata, protobuf::object_meta)
            .bool_ptr("immutable", s.immutable)
            .bytes_map("data", &s.data)
            .map("stringData", &s.string_data)
            .str("type", &s.r#type)
            .done())
    }
}

/// `kubectl get secrets`: Name, Type, Data, Age.
static COLUMNS: [Column; 4] = [
    table::col("Name", "string", "name", table::DESC_NAME, 0),
    table::col(
        "Type",
        "string",
        "",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
        0,
    ),
    table::col(
        "Data",
        "string",
        "",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
        0,
    ),
    table::col("Age", "string", "", table::DESC_CREATED, 0),
];

/// `ValidateSecret`: the name, every key, at most 1 MiB of values, and the keys each
/// well-known type requires.
fn validate(s: &api::Secret) -> Vec<FieldError> {
    let mut errs = v::validate_object_meta(&s.metadata, true, v::name_is_dns_subdomain);
    let data = s.data.clone().unwrap_or_default();
    let mut total = 0;
    for (key, value) in &data {
        for m in key_errors(key) {
            errs.push(invalid_str(format!("data[{key}]"), key, &m));
        }
        total += value.0.len();
    }
    if total > MAX_DATA_BYTES {
        errs.push(too_long("data", MAX_DATA_BYTES));
    }
    let has = |k: &str| data.contains_key(k);
    let need = |k: &str| required(format!("data[{k}]"), "");
    let json_object = |k: &str, errs: &mut Vec<FieldError>| match data.get(k) {
        None => errs.push(need(k)),
        Some(b) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&b.0) {
                errs.push(invalid(
                    format!("data[{k}]"),
                    "\"<secret contents redacted>\"".into(),
                    &e.to_string(),
                ));
            }
        }
    };
    match s.type_.as_deref().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let named = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| !n.is_empty());
            if !named {
                errs.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_object(".dockercfg", &mut errs),
        "kubernetes.io/dockerconfigjson" => json_object(".dockerconfigjson", &mut errs),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(need("username"));
            errs.push(need("password"));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|b| b.0.is_empty()) => {
            errs.push(need("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(need(k));
                }
            }
        }
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
        Secret.decode_create(&mut o, FieldValidation::Strict)?;
        Ok(o)
    }

    #[test]
    fn string_data_is_merged_into_data_and_the_type_defaults_to_opaque() {
        let s = create(json!({"metadata": {"name": "db", "namespace": "default"},
            "data": {"user": "YWRtaW4=", "password": "b2xk"},
            "stringData": {"password": "s3cret"}}))
        .unwrap();
        assert_eq!(s.pointer("/type"), Some(&json!("Opaque")));
        assert_eq!(s.pointer("/data/user"), Some(&json!("YWRtaW4=")));
        // "s3cret", base64.
        assert_eq!(s.pointer("/data/password"), Some(&json!("czNjcmV0")));
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn each_well_known_type_requires_its_keys() {
        let e = create(json!({"metadata": {"name": "t", "namespace": "default"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": "AA=="}}))
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message.contains("data[tls.key]: Required value")
                && !e.message.contains("data[tls.crt]"),
            "{}",
            e.message
        );
        let e = create(json!({"metadata": {"name": "d", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "not json"}}))
        .unwrap_err();
        assert!(
            e.message
                .contains("data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""),
            "{}",
            e.message
        );
        create(json!({"metadata": {"name": "b", "namespace": "default"},
            "type": "kubernetes.io/basic-auth", "stringData": {"username": "u"}}))
        .unwrap();
        let e = create(json!({"metadata": {"name": "bad", "namespace": "default"},
            "stringData": {"a b": "x"}}))
        .unwrap_err();
        assert!(
            e.message.contains("data[a b]: Invalid value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_type_is_immutable_and_so_is_the_data_of_an_immutable_secret() {
        let old = create(json!({"metadata": {"name": "s", "namespace": "default"},
            "stringData": {"k": "v"}, "immutable": true}))
        .unwrap();
        let mut new = old.clone();
        new["type"] = json!("kubernetes.io/basic-auth");
        new["stringData"] = json!({"username": "u"});
        let e = Secret
            .decode_update(&mut new, &old, FieldValidation::Strict)
            .unwrap_err();
        assert!(
            e.message
                .contains("type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("data: Forbidden: field is immutable when `immutable` is set"),
            "{}",
            e.message
        );
    }
}
