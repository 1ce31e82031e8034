//! The one storage code path behind REST and gRPC: get, list, create, update, patch, delete
//! and watch of Kubernetes objects kept as JSON in the store.
//!
//! Keys are `<prefix>/<resource>/<namespace>/<name>` (cluster-scoped: `<prefix>/<resource>/<name>`).
//! An object's resourceVersion is its key's mod_revision and is not stored in the value; a
//! list's is the store revision it was read at. Create is a txn on `create_revision == 0`,
//! update a compare-and-swap on the mod_revision that was read, so concurrent writers never
//! lose each other's changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bosun_client::{
    Client, Compare, CompareOp, DeleteOptions as KvDelete, GetOptions, PutOptions, Txn, TxnOp,
    prefix_end, proto::mvccpb::KeyValue,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

use bosun_api::field::{invalid, required};
use bosun_api::meta::{
    finalizers, meta_str, now_rfc3339, rfc3339, set_condition, set_resource_version,
};
use bosun_api::selectors::{FieldSelector, LabelSelector, matches};

use crate::error::{ApiResult, Status};
use crate::kinds::{self, FieldValidation, Warnings};
use crate::limits::Limits;
use crate::patch::{self, PatchType};
use crate::watch_cache::{WatchCache, decode_object};
use bosun_api::resources::Resource;

/// Bounded retries of a compare-and-swap that lost a race (without a client precondition).
const CAS_RETRIES: usize = 16;

/// Which part of an object an update addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object (its status is kept when status is a subresource).
    Main,
    /// Only `status`.
    Status,
}

impl Part {
    /// From a subresource name.
    pub fn from_subresource(res: &Resource, sub: &str) -> ApiResult<Part> {
        match sub {
            "" => Ok(Part::Main),
            "status" if res.status_subresource => Ok(Part::Status),
            other => Err(Status::bad_request(format!(
                "subresource {other} of {} is not updatable this way",
                res.qualified()
            ))),
        }
    }
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Most items to return; 0 for all.
    pub limit: i64,
    /// The continue token of the previous page.
    pub continue_token: String,
    /// `resourceVersion` with `resourceVersionMatch=Exact`: read at this revision.
    pub exact_revision: Option<i64>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Matching objects, in key order.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: i64,
    /// Set when more items may follow.
    pub continue_token: Option<String>,
    /// Items not returned yet, when known (no selectors).
    pub remaining: Option<i64>,
}

/// Options of a write.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Validate and answer, but do not write.
    pub dry_run: bool,
    /// Treatment of unknown fields.
    pub field_validation: FieldValidation,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub struct Deleted {
    /// The object as deleted, or as it is now while deletion is pending.
    pub object: Value,
    /// True when it is gone from the store.
    pub gone: bool,
}

/// A stored object with the revision it was read at.
#[derive(Debug, Clone)]
struct Stored {
    obj: Value,
    rev: i64,
}

/// Grants store leases for Event objects, reusing one lease per minute (as Kubernetes does),
/// so events expire after `ttl` without a lease per event.
struct EventLeases {
    ttl: Duration,
    current: Mutex<Option<(i64, Instant)>>,
}

const LEASE_REUSE: Duration = Duration::from_secs(60);

/// The apiserver's storage.
pub struct Storage {
    kv: Client,
    prefix: String,
    caches: HashMap<&'static str, Arc<WatchCache>>,
    event_leases: EventLeases,
    limits: Limits,
    /// Woken when a namespace starts terminating.
    pub namespace_deleted: tokio::sync::Notify,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn rfc3339_after(secs: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    rfc3339(t)
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

/// Random suffix for generateName: Kubernetes' alphabet without vowels and confusables.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The continue token: the revision of the first page and the key to start after.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        Status::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

impl Storage {
    /// Storage over `kv` under `prefix` (e.g. `/registry`), with a watch cache per resource.
    pub fn new(
        kv: Client,
        prefix: String,
        caches: HashMap<&'static str, Arc<WatchCache>>,
        event_ttl: Duration,
        limits: Limits,
    ) -> Self {
        Storage {
            kv,
            prefix: prefix.trim_end_matches('/').to_string(),
            caches,
            event_leases: EventLeases {
                ttl: event_ttl,
                current: Mutex::new(None),
            },
            limits,
            namespace_deleted: tokio::sync::Notify::new(),
        }
    }

    /// The store client.
    pub fn kv(&self) -> &Client {
        &self.kv
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
        let resp = self
            .kv
            .get(self.key(res, ns, name), GetOptions::new())
            .await
            .map_err(crate::error::from_store)?;
        Ok(resp.kvs.first().and_then(stored))
    }

    async fn read_existing(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Stored> {
        self.read(res, ns, name)
            .await?
            .ok_or_else(|| Status::not_found(res, name))
    }

    /// One object.
    pub async fn get(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Value> {
        Ok(self.read_existing(res, ns, name).await?.obj)
    }

    /// A list (one page of it with a limit).
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        for (f, _, _) in opts.fields.requirements() {
            if !res.field_selectable(f) {
                return Err(Status::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        let prefix = self.collection_prefix(res, ns);
        let end = prefix_end(prefix.as_bytes());
        let (mut revision, mut start) = if opts.continue_token.is_empty() {
            (
                opts.exact_revision.unwrap_or(0),
                prefix.clone().into_bytes(),
            )
        } else {
            let t = decode_continue(&opts.continue_token)?;
            let mut start = prefix.clone().into_bytes();
            start.extend_from_slice(t.start.as_bytes());
            start.push(0);
            (t.rv, start)
        };
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        let want = usize::try_from(opts.limit).unwrap_or(0);
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut more;
        let mut remaining = None;
        loop {
            // Without a limit, one read; with one, pages of `limit` until enough match.
            let mut g = GetOptions::new().with_range_end(end.clone());
            if want > 0 {
                g = g.with_limit(i64::try_from(want - items.len()).unwrap_or(i64::MAX));
            }
            if revision > 0 {
                g = g.with_revision(revision);
            }
            let resp = self.kv.get(start.clone(), g).await.map_err(|e| match e {
                bosun_client::Error::Compacted { .. } if !opts.continue_token.is_empty() => {
                    Status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
                }
                bosun_client::Error::Compacted { .. } => Status::expired(format!(
                    "too old resource version: {revision}"
                )),
                bosun_client::Error::FutureRevision => Status::timeout(format!(
                    "Too large resource version: {revision}"
                )),
                other => crate::error::from_store(other),
            })?;
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            more = resp.more;
            let n = resp.kvs.len();
            for kv in &resp.kvs {
                last_key = Some(kv.key.clone());
                let Some(s) = stored(kv) else { continue };
                if matches(&s.obj, &opts.labels, &opts.fields) {
                    items.push(s.obj);
                }
            }
            if want == 0 || items.len() >= want || !more || n == 0 {
                if want > 0 && more && !filtered {
                    remaining = Some(resp.count - i64::try_from(n).unwrap_or(0));
                }
                break;
            }
            if let Some(k) = &last_key {
                start = k.clone();
                start.push(0);
            }
        }
        let continue_token = match (&last_key, more && want > 0) {
            (Some(k), true) => {
                let rest = String::from_utf8_lossy(&k[prefix.len().min(k.len())..]).into_owned();
                Some(encode_continue(revision, &rest))
            }
            _ => None,
        };
        Ok(ListResult {
            items,
            revision,
            continue_token,
            remaining,
        })
    }

    async fn namespace_check(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<()> {
        if !res.namespaced {
            return Ok(());
        }
        let Some(nsres) = bosun_api::resources::by_plural("namespaces") else {
            return Ok(());
        };
        match self.read(nsres, "", ns).await? {
            None => Err(Status::not_found(nsres, ns)),
            Some(n) if !meta_str(&n.obj, "deletionTimestamp").is_empty() => Err(Status::forbidden(
                res,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Creates an object in `ns` (ignored for cluster-scoped resources).
    pub async fn create(
        &self,
        res: &Resource,
        ns: &str,
        mut obj: Value,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        check_type(res, &obj)?;
        let api_version = res.api_version();
        {
            let o = obj
                .as_object_mut()
                .ok_or_else(|| Status::bad_request("the object is not a JSON object"))?;
            o.insert("kind".into(), json!(res.kind));
            o.insert("apiVersion".into(), json!(api_version));
        }
        let m = meta_mut(&mut obj)?;
        if res.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(Status::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let generate = m
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let explicit = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for key in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(key);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if res.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        let ns = if res.namespaced { ns } else { "" };
        let attempts = if explicit.is_empty() && !generate.is_empty() {
            8
        } else {
            1
        };
        for _ in 0..attempts {
            let mut candidate = obj.clone();
            let name = if explicit.is_empty() && !generate.is_empty() {
                format!("{generate}{}", random_suffix())
            } else {
                explicit.clone()
            };
            meta_mut(&mut candidate)?.insert("name".into(), json!(name));
            kinds::on_create(res, &mut candidate);
            let warnings = kinds::prepare_create(res, &mut candidate, opts.field_validation)?;
            self.namespace_check(res, ns, &name).await?;
            let value =
                serde_json::to_vec(&candidate).map_err(|e| Status::internal(e.to_string()))?;
            self.limits.check_object(value.len())?;
            if opts.dry_run {
                return Ok((candidate, warnings));
            }
            let key = self.key(res, ns, &name);
            let mut put = PutOptions::new();
            if res.kind == "Event" {
                put = put.with_lease(self.event_lease().await?);
            }
            let resp = self
                .kv
                .txn(
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key, value, put)]),
                )
                .await
                .map_err(crate::error::from_store)?;
            if resp.succeeded {
                let rev = resp.header.map_or(0, |h| h.revision);
                set_resource_version(&mut candidate, rev);
                return Ok((candidate, warnings));
            }
            if attempts == 1 {
                return Err(Status::already_exists(res, &name));
            }
        }
        Err(Status::already_exists(res, &generate))
    }

    async fn event_lease(&self) -> ApiResult<i64> {
        if let Some((id, at)) = *self.event_leases.current.lock()
            && at.elapsed() < LEASE_REUSE
        {
            return Ok(id);
        }
        let ttl = i64::try_from((self.event_leases.ttl + LEASE_REUSE).as_secs()).unwrap_or(3660);
        let resp = self
            .kv
            .lease_grant(ttl, 0)
            .await
            .map_err(crate::error::from_store)?;
        *self.event_leases.current.lock() = Some((resp.id, Instant::now()));
        Ok(resp.id)
    }

    /// Replaces an object (or its status).
    pub async fn update(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        body: Value,
        part: Part,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        check_identity(res, ns, name, &body, false)?;
        let precondition = parse_rv(meta_str(&body, "resourceVersion"))?;
        self.modify(
            res,
            ns,
            name,
            opts,
            precondition,
            |_| Ok(body.clone()),
            part,
        )
        .await
    }

    /// Applies a patch to an object (or its status).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch_body: &[u8],
        part: Part,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        let parsed: Value = serde_json::from_slice(patch_body)
            .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
        self.modify(
            res,
            ns,
            name,
            opts,
            None,
            |cur| {
                let out = patch::apply(
                    ptype,
                    res.kind,
                    cur,
                    &parsed,
                    self.limits.patch_copy_bytes(),
                )?;
                // A patch cannot rename, move or retype the object.
                check_identity(res, ns, name, &out, true)?;
                // A resourceVersion in the patch is a precondition.
                let want = meta_str(&out, "resourceVersion");
                if !want.is_empty() && want != meta_str(cur, "resourceVersion") {
                    return Err(Status::conflict(res, name));
                }
                Ok(out)
            },
            part,
        )
        .await
    }

    /// Read, change, compare-and-swap; retried on a lost race unless the client pinned a
    /// version. `change` gets the current object and returns the client's new version.
    #[allow(clippy::too_many_arguments)]
    async fn modify(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        opts: WriteOptions,
        precondition: Option<i64>,
        change: impl Fn(&Value) -> ApiResult<Value>,
        part: Part,
    ) -> ApiResult<(Value, Warnings)> {
        let ns = if res.namespaced { ns } else { "" };
        for _ in 0..CAS_RETRIES {
            let cur = self.read_existing(res, ns, name).await?;
            if precondition.is_some_and(|p| p != cur.rev) {
                return Err(Status::conflict(res, name));
            }
            let body = change(&cur.obj)?;
            let (mut new, warnings) = merge_update(res, &cur.obj, body, part, opts)?;
            if new == cur.obj {
                return Ok((cur.obj, warnings));
            }
            if opts.dry_run {
                let encoded =
                    serde_json::to_vec(&new).map_err(|e| Status::internal(e.to_string()))?;
                self.limits.check_object(encoded.len())?;
                return Ok((new, warnings));
            }
            let finished = !meta_str(&new, "deletionTimestamp").is_empty()
                && finalizers(&new).is_empty()
                && !graceful_pending(res, &new);
            match self.swap(res, ns, name, cur.rev, &new, finished).await? {
                Some(rev) => {
                    set_resource_version(&mut new, rev);
                    return Ok((new, warnings));
                }
                None if precondition.is_some() => return Err(Status::conflict(res, name)),
                None => continue,
            }
        }
        Err(Status::conflict(res, name))
    }

    /// Compare-and-swap of `new` (or delete when `delete`) on `rev`; the new revision, or
    /// `None` when the object changed meanwhile.
    async fn swap(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        rev: i64,
        new: &Value,
        delete: bool,
    ) -> ApiResult<Option<i64>> {
        let key = self.key(res, ns, name);
        let op = if delete {
            TxnOp::delete(key.clone(), KvDelete::new())
        } else {
            let mut stored = new.clone();
            if let Ok(m) = meta_mut(&mut stored) {
                m.remove("resourceVersion");
            }
            let value = serde_json::to_vec(&stored).map_err(|e| Status::internal(e.to_string()))?;
            self.limits.check_object(value.len())?;
            // Keep an event's lease.
            TxnOp::put(key.clone(), value, PutOptions::new().with_ignore_lease())
        };
        let resp = self
            .kv
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                    .and_then([op]),
            )
            .await
            .map_err(crate::error::from_store)?;
        Ok(resp
            .succeeded
            .then(|| resp.header.map_or(0, |h| h.revision)))
    }

    /// Binds a pod to a node (`pods/<name>/binding`).
    pub async fn bind(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        binding: &Value,
    ) -> ApiResult<()> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            let e = required("target.name", "");
            return Err(Status::invalid("core", "Binding", name, &[e])
                .with_details_kind(res.group, res.kind));
        }
        for _ in 0..CAS_RETRIES {
            let cur = self.read_existing(res, ns, name).await?;
            let mut pod = cur.obj.clone();
            if !meta_str(&pod, "deletionTimestamp").is_empty() {
                return Err(Status::conflict_msg(
                    res,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let assigned = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !assigned.is_empty() {
                return Err(Status::conflict_msg(
                    res,
                    name,
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            pod["spec"]["nodeName"] = json!(node);
            set_condition(&mut pod, "PodScheduled", "True", "", "");
            if self
                .swap(res, ns, name, cur.rev, &pod, false)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Status::conflict(res, name))
    }

    /// Deletes an object, as Kubernetes does: preconditions, finalizers (with the
    /// propagation policy recorded as `orphan`/`foregroundDeletion`), graceful pod deletion.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Deleted> {
        let options = DeleteOptions::parse(options)?;
        self.delete_parsed(res, ns, name, &options, opts).await
    }

    async fn delete_parsed(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        options: &DeleteOptions,
        opts: WriteOptions,
    ) -> ApiResult<Deleted> {
        let ns = if res.namespaced { ns } else { "" };
        let grace_opt = options.grace_period;
        let policy = options.policy.clone();
        for _ in 0..CAS_RETRIES {
            let cur = self.read_existing(res, ns, name).await?;
            options.check(res, name, &cur.obj, cur.rev)?;
            let mut obj = cur.obj.clone();
            let mut fins = finalizers(&obj);
            let already_deleting = !meta_str(&obj, "deletionTimestamp").is_empty();
            let policy_finalizer = match policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = policy_finalizer {
                if !fins.iter().any(|x| x == f) {
                    fins.push(f.to_string());
                }
                fins.retain(|x| x == f || (x != "orphan" && x != "foregroundDeletion"));
            }
            let grace = if res.kind == "Pod" {
                pod_grace(&obj, grace_opt)
            } else {
                0
            };
            // A namespace is emptied first (see `finalize_namespaces`).
            let namespace = res.kind == "Namespace";
            if grace == 0 && fins.is_empty() && !namespace {
                if opts.dry_run {
                    return Ok(Deleted {
                        object: obj,
                        gone: true,
                    });
                }
                match self.swap(res, ns, name, cur.rev, &obj, true).await? {
                    Some(rev) => {
                        set_resource_version(&mut obj, rev);
                        return Ok(Deleted {
                            object: obj,
                            gone: true,
                        });
                    }
                    None => continue,
                }
            }
            // Deletion pending: mark it, keep the object.
            let m = meta_mut(&mut obj)?;
            if !fins.is_empty() {
                m.insert("finalizers".into(), json!(fins));
            }
            let deadline = if grace > 0 {
                rfc3339_after(grace)
            } else {
                now_rfc3339()
            };
            let shorter = m
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| grace < g);
            if !already_deleting || shorter {
                m.insert("deletionTimestamp".into(), json!(deadline));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if namespace {
                obj["status"]["phase"] = json!("Terminating");
            }
            if obj == cur.obj {
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
            if let Some(rev) = self.swap(res, ns, name, cur.rev, &obj, false).await? {
                set_resource_version(&mut obj, rev);
                if namespace {
                    self.namespace_deleted.notify_one();
                }
                return Ok(Deleted {
                    object: obj,
                    gone: false,
                });
            }
        }
        Err(Status::conflict(res, name))
    }

    /// Deletes every matching object in a collection; returns what was deleted or marked.
    ///
    /// A refused request changes nothing: the options are checked, and then every listed
    /// object against them (protected namespaces, preconditions), before the first delete.
    /// Only an object changed by someone else between the check and its delete can still
    /// fail part-way, as in Kubernetes, whose delete-collection is not atomic either.
    pub async fn delete_collection(
        &self,
        res: &Resource,
        ns: Option<&str>,
        list: &ListOptions,
        options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<Value>> {
        if !res.delete_collection {
            return Err(Status::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let options = DeleteOptions::parse(options)?;
        let page = self.list(res, ns, list).await?;
        for item in &page.items {
            let rev = parse_rv(meta_str(item, "resourceVersion"))?.unwrap_or(0);
            options.check(res, meta_str(item, "name"), item, rev)?;
        }
        let mut out = Vec::with_capacity(page.items.len());
        for item in page.items {
            let name = meta_str(&item, "name").to_string();
            let ins = meta_str(&item, "namespace").to_string();
            match self.delete_parsed(res, &ins, &name, &options, opts).await {
                Ok(d) => out.push(d.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Empties every terminating namespace (deleting its objects as a client would, so pods
    /// on nodes go gracefully) and removes it once nothing is left: the namespace
    /// lifecycle that kubectl waits for. Returns how many namespaces are still terminating.
    pub async fn finalize_namespaces(&self) -> ApiResult<usize> {
        let Some(nsres) = bosun_api::resources::by_plural("namespaces") else {
            return Ok(0);
        };
        let all = self.list(nsres, None, &ListOptions::default()).await?;
        let mut pending = 0;
        for ns in all.items {
            if meta_str(&ns, "deletionTimestamp").is_empty() {
                continue;
            }
            let name = meta_str(&ns, "name").to_string();
            let mut left = 0;
            for res in bosun_api::resources::RESOURCES
                .iter()
                .filter(|r| r.namespaced)
            {
                self.delete_collection(
                    res,
                    Some(&name),
                    &ListOptions::default(),
                    &json!({}),
                    WriteOptions::default(),
                )
                .await?;
                let one = ListOptions {
                    limit: 1,
                    ..ListOptions::default()
                };
                left += self.list(res, Some(&name), &one).await?.items.len();
            }
            if left > 0 || !finalizers(&ns).is_empty() {
                pending += 1;
                continue;
            }
            let rev = parse_rv(meta_str(&ns, "resourceVersion"))?.unwrap_or(0);
            if self.swap(nsres, "", &name, rev, &ns, true).await?.is_none() {
                pending += 1;
            }
        }
        Ok(pending)
    }

    /// Ensures an object exists (used for the built-in namespaces at start).
    pub async fn ensure(&self, res: &Resource, obj: Value) -> ApiResult<()> {
        match self.create(res, "", obj, WriteOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn stored(kv: &KeyValue) -> Option<Stored> {
    decode_object(&kv.value, kv.mod_revision).map(|obj| Stored {
        obj,
        rev: kv.mod_revision,
    })
}

/// A `resourceVersion` parameter of a list or watch: "" for none, else a store revision.
/// Revisions are unsigned, so anything but decimal digits is refused (400), with the text of
/// kube-apiserver's storage; a version above the largest revision is taken as that.
pub fn parse_resource_version(rv: &str) -> ApiResult<Option<i64>> {
    if rv.is_empty() {
        return Ok(None);
    }
    if !rv.bytes().all(|b| b.is_ascii_digit()) {
        let q = bosun_api::names::go_quote(rv);
        return Err(Status::bad_request(format!(
            "invalid resource version: resourceVersion: Invalid value: {q}: strconv.ParseUint: parsing {q}: invalid syntax"
        )));
    }
    Ok(Some(rv.parse::<i64>().unwrap_or(i64::MAX)))
}

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

/// `DeleteOptions`, read once per request and checked against each object before it is
/// deleted.
#[derive(Debug, Clone, Default)]
struct DeleteOptions {
    grace_period: Option<i64>,
    policy: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads and validates the options (400 for a malformed or unsupported value).
    fn parse(options: &Value) -> ApiResult<DeleteOptions> {
        if !options.is_object() {
            return Err(Status::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type v1.DeleteOptions",
                go_json_type(options)
            )));
        }
        let grace_period = match options.get("gracePeriodSeconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                Status::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.gracePeriodSeconds of type int64",
                    go_json_type(v)
                ))
            })?),
        };
        let policy = match string_field(options, "propagationPolicy", "DeleteOptions")? {
            "" => match options.get("orphanDependents") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(o)) => Some(if *o { "Orphan" } else { "Background" }.to_string()),
                Some(v) => {
                    return Err(Status::bad_request(format!(
                        "json: cannot unmarshal {} into Go struct field DeleteOptions.orphanDependents of type bool",
                        go_json_type(v)
                    )));
                }
            },
            p => Some(p.to_string()),
        };
        match policy.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => {}
            Some(other) => {
                return Err(Status::bad_request(format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        let pre = match options.get("preconditions") {
            None | Some(Value::Null) => &Value::Null,
            Some(p @ Value::Object(_)) => p,
            Some(other) => {
                return Err(Status::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.preconditions of type v1.Preconditions",
                    go_json_type(other)
                )));
            }
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Ok(DeleteOptions {
            grace_period,
            policy,
            uid: some(string_field(pre, "uid", "Preconditions")?),
            resource_version: some(string_field(pre, "resourceVersion", "Preconditions")?),
        })
    }

    /// Whether `obj` (at revision `rev`) may be deleted with these options: not a protected
    /// namespace, and its preconditions hold.
    fn check(&self, res: &Resource, name: &str, obj: &Value, rev: i64) -> ApiResult<()> {
        if res.kind == "Namespace" && crate::PROTECTED_NAMESPACES.contains(&name) {
            return Err(Status::forbidden(
                res,
                name,
                "this namespace may not be deleted",
            ));
        }
        if let Some(uid) = &self.uid {
            let have = meta_str(obj, "uid");
            if uid != have {
                return Err(Status::conflict_msg(
                    res,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    ),
                ));
            }
        }
        if let Some(rv) = &self.resource_version
            && parse_rv(rv)? != Some(rev)
        {
            return Err(Status::conflict_msg(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
        Ok(())
    }
}

/// A pod's grace period for deletion: 0 when it never ran on a node or already finished.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let g = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    g.max(0)
}

/// A pod whose graceful deletion waits for its kubelet (which deletes it with grace 0).
fn graceful_pending(res: &Resource, obj: &Value) -> bool {
    res.kind == "Pod"
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

/// Builds the object an update stores from the current one and the client's version.
fn merge_update(
    res: &Resource,
    cur: &Value,
    body: Value,
    part: Part,
    opts: WriteOptions,
) -> ApiResult<(Value, Warnings)> {
    let mut new = match part {
        Part::Status => {
            let mut n = cur.clone();
            if let (Some(o), Some(s)) = (n.as_object_mut(), body.get("status")) {
                o.insert("status".into(), s.clone());
            }
            n
        }
        Part::Main => {
            let mut n = body;
            if res.status_subresource
                && let Some(o) = n.as_object_mut()
            {
                match cur.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
            n
        }
    };
    if let Some(o) = new.as_object_mut() {
        o.insert("kind".into(), json!(res.kind));
        o.insert("apiVersion".into(), json!(res.api_version()));
    }
    // System-owned metadata comes from the stored object.
    let keep = [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ];
    let cur_meta = cur
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if cur_meta.contains_key("deletionTimestamp") {
        let old_fins = finalizers(cur);
        if finalizers(&new).iter().any(|f| !old_fins.contains(f)) {
            return Err(Status::forbidden(
                res,
                meta_str(cur, "name"),
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    let m = meta_mut(&mut new)?;
    for k in keep {
        match cur_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    m.insert(
        "resourceVersion".into(),
        cur_meta
            .get("resourceVersion")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let warnings = kinds::prepare_update(res, &mut new, cur, opts.field_validation)?;
    // The typed round trip may drop an empty resourceVersion; restore it for comparison.
    set_resource_version(
        &mut new,
        meta_str(cur, "resourceVersion").parse().unwrap_or(0),
    );
    if res.generation && new.get("spec") != cur.get("spec") {
        let g = cur
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new)?.insert("generation".into(), json!(g + 1));
    }
    Ok((new, warnings))
}

/// The `Scale` of a deployment or replicaset.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            LabelSelector::from_api(s)
                .map(|l| l.to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

impl Storage {
    /// Reads the scale of a deployment or replicaset.
    pub async fn get_scale(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<Value> {
        Ok(scale_of(&self.get(res, ns, name).await?))
    }

    /// Patches the `Scale` of a deployment or replicaset.
    pub async fn patch_scale(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Value> {
        let copy_limit = self.limits.patch_copy_bytes();
        self.set_scale(
            res,
            ns,
            name,
            |cur| patch::apply(ptype, "Scale", cur, patch, copy_limit),
            opts,
        )
        .await
    }

    /// Sets the replicas from a new `Scale` (or a patch of the current one).
    pub async fn set_scale(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        change: impl Fn(&Value) -> ApiResult<Value>,
        opts: WriteOptions,
    ) -> ApiResult<Value> {
        let (obj, _) = self
            .modify(
                res,
                ns,
                name,
                opts,
                None,
                |cur| {
                    let scale = change(&scale_of(cur))?;
                    let want = meta_str(&scale, "resourceVersion");
                    if !want.is_empty() && want != meta_str(cur, "resourceVersion") {
                        return Err(Status::conflict(res, name));
                    }
                    let replicas = scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if replicas < 0 {
                        let e = invalid(
                            "spec.replicas",
                            replicas.to_string(),
                            "must be greater than or equal to 0",
                        );
                        return Err(Status::invalid("autoscaling", "Scale", name, &[e])
                            .with_details_kind(res.group, res.kind));
                    }
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = json!(replicas);
                    Ok(next)
                },
                Part::Main,
            )
            .await?;
        Ok(scale_of(&obj))
    }
}
