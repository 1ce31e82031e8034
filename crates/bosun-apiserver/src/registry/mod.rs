//! The registry: the one code path behind REST and gRPC that reads and writes Kubernetes
//! objects, kept as JSON in the store. One file per verb: [`get_list`], [`create`],
//! [`update`] (update and patch), [`subresource`] (scale and binding), [`delete`], and the
//! namespace lifecycle ([`namespace`]). Kinds differ only through their strategy
//! ([`crate::kinds::Kind`]).
//!
//! Keys are `<prefix>/<resource>/<namespace>/<name>` (cluster-scoped:
//! `<prefix>/<resource>/<name>`). An object's resourceVersion is its key's mod_revision and
//! is not stored in the value; a list's is the store revision it was read at. Create is a
//! put on a key that does not exist, update and delete a compare-and-swap on the
//! mod_revision that was read, so concurrent writers never lose each other's changes. The
//! store is reached only through the narrow [`Store`] trait.

pub mod create;
pub mod delete;
pub mod get_list;
pub mod managed;
#[cfg(test)]
mod mem;
pub mod namespace;
pub mod store;
pub mod subresource;
#[cfg(test)]
mod tests;
pub mod update;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::resources::Resource;
use serde_json::Value;

use crate::admission::Admission;
use crate::error::{ApiResult, Status};
use crate::kinds::FieldValidation;
use crate::limits::Limits;
use crate::watch::cache::{WatchCache, decode_object};

pub use get_list::{ListOptions, ListResult, check_field_selector, parse_resource_version};
pub use store::{EtcdStore, Store};

/// Bounded retries of a compare-and-swap that lost a race (without a client precondition).
const CAS_RETRIES: usize = 16;

/// Options of a write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Validate and answer, but do not write.
    pub dry_run: bool,
    /// Treatment of unknown fields.
    pub field_validation: FieldValidation,
    /// Who writes, recorded in `metadata.managedFields` (nothing is recorded when empty).
    pub field_manager: managed::FieldManager,
}

/// A stored object with the revision it was read at.
#[derive(Debug, Clone)]
struct Stored {
    obj: Value,
    rev: i64,
}

/// The apiserver's registry over a store (the real one unless a test says otherwise).
pub struct Registry<S = EtcdStore> {
    store: S,
    prefix: String,
    caches: HashMap<&'static str, Arc<WatchCache>>,
    event_leases: create::EventLeases,
    limits: Limits,
    admission: Admission,
}

impl<S> std::fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<S: Store> Registry<S> {
    /// The registry over `store` under `prefix` (e.g. `/registry`), with a watch cache per
    /// resource.
    pub fn new(
        store: S,
        prefix: String,
        caches: HashMap<&'static str, Arc<WatchCache>>,
        event_ttl: Duration,
        limits: Limits,
    ) -> Self {
        Registry {
            store,
            prefix: prefix.trim_end_matches('/').to_string(),
            caches,
            event_leases: create::EventLeases::new(event_ttl),
            limits,
            admission: Admission::default(),
        }
    }

    /// The same registry with these admission settings.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The size limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store key of an object.
    pub fn key(&self, res: &Resource, ns: &str, name: &str) -> String {
        if res.namespaced {
            format!("{}/{}/{}/{}", self.prefix, res.plural, ns, name)
        } else {
            format!("{}/{}/{}", self.prefix, res.plural, name)
        }
    }

    /// The key prefix of a collection (a namespace's, or every namespace's).
    pub fn collection_prefix(&self, res: &Resource, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if res.namespaced => format!("{}/{}/{}/", self.prefix, res.plural, ns),
            _ => format!("{}/{}/", self.prefix, res.plural),
        }
    }

    /// Every watch cache, by resource name, in name order.
    pub fn caches(&self) -> Vec<(&'static str, &Arc<WatchCache>)> {
        let mut all: Vec<_> = self.caches.iter().map(|(k, c)| (*k, c)).collect();
        all.sort_by_key(|(k, _)| *k);
        all
    }

    /// The watch cache of a resource.
    pub fn cache(&self, res: &Resource) -> ApiResult<&Arc<WatchCache>> {
        self.caches
            .get(res.plural)
            .ok_or_else(|| Status::method_not_allowed(format!("{} cannot be watched", res.plural)))
    }

    async fn read(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Option<Stored>> {
        let kv = self.store.get(&self.key(res, ns, name)).await?;
        Ok(kv.and_then(|kv| stored(&kv.value, kv.mod_revision)))
    }

    async fn read_existing(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Stored> {
        self.read(res, ns, name)
            .await?
            .ok_or_else(|| Status::not_found(res, name))
    }

    /// Compare-and-swap of `new` (or delete when `delete`) on `rev`; the new revision, or
    /// `None` when the object changed meanwhile.
    async fn swap(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        rev: i64,
        new: &mut Value,
        delete: bool,
    ) -> ApiResult<Option<i64>> {
        let key = self.key(res, ns, name);
        if delete {
            return self.store.delete(&key, rev).await;
        }
        // Stored without its resourceVersion (the store's revision is the version): it is
        // taken out of `new`, which the caller stamps with the revision returned.
        if let Ok(m) = meta_mut(new) {
            m.remove("resourceVersion");
        }
        let value = serde_json::to_vec(&*new).map_err(|e| Status::internal(e.to_string()))?;
        self.limits.check_object(value.len())?;
        // An event keeps its lease.
        let announced = self.announce(res, &key, &value, new);
        let swapped = self.store.update(&key, value, rev).await;
        if !matches!(swapped, Ok(Some(_))) {
            self.withdraw(res, &key, announced);
        }
        swapped
    }

    /// Tells the watch cache of `res` that `value`, the encoding of `obj`, is being stored at
    /// `key`, so that the change's event need not decode it (see `WatchCache::will_write`).
    fn announce(&self, res: &Resource, key: &str, value: &[u8], obj: &Value) -> Option<u64> {
        let cache = self.caches.get(res.plural)?;
        Some(cache.will_write(key.as_bytes(), value, obj))
    }

    /// Takes back an announcement whose write failed.
    fn withdraw(&self, res: &Resource, key: &str, announced: Option<u64>) {
        if let (Some(cache), Some(id)) = (self.caches.get(res.plural), announced) {
            cache.withdraw(key.as_bytes(), id);
        }
    }
}

fn stored(value: &[u8], mod_revision: i64) -> Option<Stored> {
    decode_object(value, mod_revision).map(|obj| Stored {
        obj,
        rev: mod_revision,
    })
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut serde_json::Map<String, Value>> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| Status::bad_request("the object is not a JSON object"))?;
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !m.is_object() {
        return Err(Status::bad_request("metadata must be an object"));
    }
    m.as_object_mut()
        .ok_or_else(|| Status::bad_request("metadata must be an object"))
}

/// A resourceVersion in a request body or precondition: "" for none.
fn parse_rv(s: &str) -> ApiResult<Option<i64>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<i64>()
        .map(Some)
        .map_err(|_| Status::bad_request(format!("invalid resource version: {s}")))
}

/// Go's name for the JSON type of a value, as its decoder reports a mismatch.
fn go_json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string field of a JSON object: absent or null is "", another type is refused (400) the
/// way Kubernetes' decoder refuses it.
fn string_field<'a>(obj: &'a Value, field: &str, owner: &str) -> ApiResult<&'a str> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Status::bad_request(format!(
            "json: cannot unmarshal {} into Go struct field {owner}.{field} of type string",
            go_json_type(other)
        ))),
    }
}

/// Refuses a body that is not an object of the resource's kind and API version (400, with
/// kube-apiserver's texts).
fn check_type(res: &Resource, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(Status::bad_request("the body is not a JSON object"));
    }
    // kube-apiserver reads kind and apiVersion first; a non-string makes the body
    // unrecognizable.
    let unrecognized = |e: Status| {
        Status::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {}",
            res.kind, e.message
        ))
    };
    let kind = string_field(obj, "kind", "").map_err(unrecognized)?;
    if !kind.is_empty() && kind != res.kind {
        return Err(Status::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    let av = string_field(obj, "apiVersion", "").map_err(unrecognized)?;
    if !av.is_empty() && av != res.api_version() {
        return Err(Status::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    Ok(())
}

/// Refuses an update or patch result that names another object than the request: another
/// kind or API version, name, or namespace (Kubernetes' `checkName` and
/// `EnsureObjectNamespaceMatchesRequestNamespace`, 400). A patch must leave the name in place
/// (`name_required`); an update may omit it.
fn check_identity(
    res: &Resource,
    ns: &str,
    name: &str,
    obj: &Value,
    name_required: bool,
) -> ApiResult<()> {
    check_type(res, obj)?;
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => &Value::Null,
        Some(m @ Value::Object(_)) => m,
        Some(other) => {
            return Err(Status::bad_request(format!(
                "json: cannot unmarshal {} into Go struct field {}.metadata of type v1.ObjectMeta",
                go_json_type(other),
                res.kind
            )));
        }
    };
    let owner = "ObjectMeta.metadata";
    let body_name = string_field(meta, "name", owner)?;
    if body_name.is_empty() && name_required {
        return Err(Status::bad_request("name must be provided"));
    }
    if !body_name.is_empty() && body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = string_field(meta, "namespace", owner)?;
    if res.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}
