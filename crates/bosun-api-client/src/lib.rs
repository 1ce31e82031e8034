//! The client of the apiserver's gRPC API, typed with the `k8s-openapi` objects: what Bosun's
//! controllers, scheduler and kubelet use to read, change and watch the cluster's objects.
//!
//! This is the components' side of the line "only the apiserver talks to the store": the
//! crate depends on no store crate (neither `bosun-client`, the store's etcd SDK, nor
//! `bosun-proto`, which also holds the etcd API), so a component that depends on it alone
//! cannot reach the store. The apiserver serves this API on the same listener as kubectl's
//! REST API, through the same storage code path (defaulting, validation, optimistic
//! concurrency, finalizers, watch semantics).
//!
//! ```no_run
//! use bosun_api_client::{ApiClient, ApiError, ListParams, WatchEvent, WatchParams};
//! use bosun_api_client::k8s_openapi::api::core::v1::Pod;
//!
//! # async fn demo() -> Result<(), ApiError> {
//! let api = ApiClient::connect("http://127.0.0.1:8080").await?;
//! let pods = api.list::<Pod>("default", &ListParams::default()).await?;
//! let mut watch = api
//!     .watch::<Pod>("default", &WatchParams::from_version(&pods.resource_version))
//!     .await?;
//! while let Some(ev) = watch.next().await? {
//!     if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
//!         println!("{:?}", p.metadata.name);
//!     }
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub use k8s_openapi;

/// The client side of `proto/bosun/api.proto` (package `bosun.api.v1`).
mod apipb {
    #![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
    tonic::include_proto!("bosun.api.v1");
}

use std::time::Duration;

use apipb::api_client::ApiClient as RawClient;
use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

/// An error from the apiserver (its Kubernetes `Status`) or from the transport.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP-style status code (404, 409, 422, ...); 503 for transport failures.
    pub code: u16,
    /// Kubernetes reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`, ...
    pub reason: String,
    /// The message.
    pub message: String,
    /// The full `Status` object, when the server sent one.
    pub status: Option<serde_json::Value>,
}

impl ApiError {
    fn local(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            status: None,
        }
    }

    fn from_grpc(s: tonic::Status) -> Self {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(s.details())
            && v.get("kind").and_then(|k| k.as_str()) == Some("Status")
        {
            return Self::from_status(v);
        }
        let code = match s.code() {
            tonic::Code::NotFound => 404,
            tonic::Code::AlreadyExists | tonic::Code::Aborted => 409,
            tonic::Code::InvalidArgument => 400,
            tonic::Code::DeadlineExceeded => 504,
            _ => 503,
        };
        Self::local(code, "ServiceUnavailable", s.message())
    }

    fn from_status(v: serde_json::Value) -> Self {
        ApiError {
            code: v
                .get("code")
                .and_then(|c| c.as_u64())
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500),
            reason: v
                .get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_string(),
            message: v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string(),
            status: Some(v),
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// 409 Conflict (the object changed since it was read): re-read and retry.
    pub fn is_conflict(&self) -> bool {
        self.code == 409 && self.reason == "Conflict"
    }

    /// 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.code == 409 && self.reason == "AlreadyExists"
    }

    /// 410 Expired: the version asked for is gone; re-list.
    pub fn is_expired(&self) -> bool {
        self.code == 410
    }
}

fn decode<K: DeserializeOwned>(bytes: &[u8]) -> Result<K, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::local(500, "InternalError", format!("decode object: {e}")))
}

fn encode<K: Serialize>(obj: &K) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(obj)
        .map_err(|e| ApiError::local(400, "BadRequest", format!("encode object: {e}")))
}

fn object_ref<K: Resource>(ns: &str, name: &str, sub: &str) -> apipb::ObjectRef {
    apipb::ObjectRef {
        resource: K::URL_PATH_SEGMENT.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        subresource: sub.to_string(),
    }
}

fn dynamic_ref(resource: &str, ns: &str, name: &str) -> apipb::ObjectRef {
    apipb::ObjectRef {
        resource: resource.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        subresource: String::new(),
    }
}

/// List options.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// Label selector (`app=web,tier!=db`).
    pub label_selector: String,
    /// Field selector (`spec.nodeName=n1`).
    pub field_selector: String,
    /// Page size; 0 for everything.
    pub limit: i64,
    /// Continue token from the previous page.
    pub continue_token: String,
}

/// A page of objects.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    /// The objects.
    pub items: Vec<K>,
    /// The version the list was read at: watch from it.
    pub resource_version: String,
    /// Set when more remain.
    pub continue_token: Option<String>,
}

/// Watch options.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    /// Label selector.
    pub label_selector: String,
    /// Field selector.
    pub field_selector: String,
    /// Changes after this version; "" starts with the current objects as `Added`.
    pub resource_version: String,
    /// Ask for bookmarks.
    pub allow_bookmarks: bool,
    /// End after this long.
    pub timeout: Option<Duration>,
}

impl WatchParams {
    /// Changes after `resource_version` (typically a list's).
    pub fn from_version(resource_version: &str) -> Self {
        WatchParams {
            resource_version: resource_version.to_string(),
            ..Self::default()
        }
    }
}

/// A patch.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 6902 JSON patch (an array of operations).
    Json(serde_json::Value),
    /// RFC 7386 merge patch.
    Merge(serde_json::Value),
    /// Kubernetes strategic merge patch.
    Strategic(serde_json::Value),
}

/// One watch event.
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    /// Created (or present at the start of a watch from "").
    Added(K),
    /// Updated.
    Modified(K),
    /// Deleted: its last state.
    Deleted(K),
    /// Every change up to this version has been delivered.
    Bookmark(String),
}

/// A typed watch. It resumes by itself from the last version received when the server drops
/// it for being slow; it ends with an [`ApiError`] 410 when the version is too old (re-list).
pub struct Watch<K> {
    client: ApiClient,
    request: apipb::WatchRequest,
    stream: tonic::Streaming<apipb::WatchEvent>,
    last_version: String,
    resumes: u32,
    _kind: std::marker::PhantomData<K>,
}

impl<K> std::fmt::Debug for Watch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("resource", &self.request.resource)
            .field("last_version", &self.last_version)
            .finish()
    }
}

/// Resumes allowed in a row without an event in between.
const MAX_RESUMES: u32 = 10;

impl<K: DeserializeOwned> Watch<K> {
    /// The next event; `Ok(None)` when the watch ended (its timeout).
    pub async fn next(&mut self) -> Result<Option<WatchEvent<K>>, ApiError> {
        loop {
            match self.stream.message().await {
                Ok(Some(ev)) => {
                    self.resumes = 0;
                    return decode_event(ev, &mut self.last_version).map(Some);
                }
                Ok(None) => return Ok(None),
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted && self.resumes < MAX_RESUMES =>
                {
                    // Dropped for being slow: resume right after what we have.
                    self.resumes += 1;
                    let mut req = self.request.clone();
                    req.resource_version = self.last_version.clone();
                    self.stream = self
                        .client
                        .raw()
                        .watch(req)
                        .await
                        .map_err(ApiError::from_grpc)?
                        .into_inner();
                }
                Err(s) => return Err(ApiError::from_grpc(s)),
            }
        }
    }

    /// The last version received (resume a new watch from it).
    pub fn last_version(&self) -> &str {
        &self.last_version
    }
}

/// One event of the wire stream as a typed [`WatchEvent`]; an event carrying an object
/// records its version in `last_version`, where the watch resumes from.
fn decode_event<K: DeserializeOwned>(
    ev: apipb::WatchEvent,
    last_version: &mut String,
) -> Result<WatchEvent<K>, ApiError> {
    let version = |bytes: &[u8]| -> String {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.pointer("/metadata/resourceVersion")
                    .and_then(|r| r.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    let rv = version(&ev.object);
    if !rv.is_empty() && ev.r#type != "ERROR" {
        *last_version = rv.clone();
    }
    match ev.r#type.as_str() {
        "ADDED" => Ok(WatchEvent::Added(decode(&ev.object)?)),
        "MODIFIED" => Ok(WatchEvent::Modified(decode(&ev.object)?)),
        "DELETED" => Ok(WatchEvent::Deleted(decode(&ev.object)?)),
        "BOOKMARK" => Ok(WatchEvent::Bookmark(rv)),
        "ERROR" => Err(serde_json::from_slice(&ev.object)
            .map(ApiError::from_status)
            .unwrap_or_else(|_| ApiError::local(500, "InternalError", "undecodable watch error"))),
        other => Err(ApiError::local(
            500,
            "InternalError",
            format!("unknown watch event type {other}"),
        )),
    }
}

/// What a delete did.
#[derive(Debug, Clone)]
pub struct Deleted<K> {
    /// The object as deleted, or as it is while deletion is pending.
    pub object: K,
    /// True when it is gone.
    pub gone: bool,
}

/// A client of the apiserver's gRPC API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    raw: RawClient<Channel>,
    /// Sent with every write, recorded in `metadata.managedFields`.
    field_manager: std::sync::Arc<str>,
}

fn name_of(meta: &ObjectMeta) -> Result<&str, ApiError> {
    meta.name
        .as_deref()
        .ok_or_else(|| ApiError::local(400, "BadRequest", "metadata.name is required"))
}

impl ApiClient {
    /// Connects (lazily) to the apiserver at `url` (`http://host:port`, the same URL kubectl uses).
    pub async fn connect(url: &str) -> Result<Self, ApiError> {
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| ApiError::local(400, "BadRequest", format!("apiserver URL {url}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(ApiClient {
            raw: RawClient::new(ep.connect_lazy()).max_decoding_message_size(64 * 1024 * 1024),
            field_manager: "".into(),
        })
    }

    /// This client, writing as `name` (`bosun-scheduler`, `bosun-controller-manager`,
    /// `bosun-kubelet`): every create, update and patch carries it, and the apiserver records
    /// it in `metadata.managedFields` as kube-apiserver records kubectl's `fieldManager`.
    /// Without one the apiserver names the user agent's program. At most 128 bytes.
    pub fn with_field_manager(&self, name: &str) -> Self {
        ApiClient {
            raw: self.raw.clone(),
            field_manager: name.into(),
        }
    }

    /// The field manager this client writes as ("" when none was set).
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    fn raw(&self) -> RawClient<Channel> {
        self.raw.clone()
    }

    /// One object (`ns` empty for cluster-scoped kinds).
    pub async fn get<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<K, ApiError> {
        let r = self
            .raw()
            .get(apipb::GetRequest {
                r#ref: Some(object_ref::<K>(ns, name, "")),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    /// A list (`ns` empty: every namespace).
    pub async fn list<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        p: &ListParams,
    ) -> Result<ObjectList<K>, ApiError> {
        self.list_as(K::URL_PATH_SEGMENT, ns, p).await
    }

    /// A list of the resource named by its plural, each object decoded as `K` (which may
    /// keep only part of it).
    pub async fn list_as<K: DeserializeOwned>(
        &self,
        resource: &str,
        ns: &str,
        p: &ListParams,
    ) -> Result<ObjectList<K>, ApiError> {
        let r = self
            .raw()
            .list(apipb::ListRequest {
                resource: resource.to_string(),
                namespace: ns.to_string(),
                label_selector: p.label_selector.clone(),
                field_selector: p.field_selector.clone(),
                limit: p.limit,
                r#continue: p.continue_token.clone(),
            })
            .await
            .map_err(ApiError::from_grpc)?
            .into_inner();
        Ok(ObjectList {
            items: r
                .items
                .iter()
                .map(|i| decode(i))
                .collect::<Result<_, _>>()?,
            resource_version: r.resource_version,
            continue_token: (!r.r#continue.is_empty()).then_some(r.r#continue),
        })
    }

    /// Creates an object; the server fills in name (from generateName), uid, defaults.
    pub async fn create<K: Resource + Serialize + DeserializeOwned>(
        &self,
        ns: &str,
        obj: &K,
    ) -> Result<K, ApiError> {
        let r = self
            .raw()
            .create(apipb::CreateRequest {
                r#ref: Some(object_ref::<K>(ns, "", "")),
                json: encode(obj)?,
                field_manager: self.field_manager.to_string(),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    async fn put<
        K: Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned,
    >(
        &self,
        ns: &str,
        obj: &K,
        sub: &str,
    ) -> Result<K, ApiError> {
        let name = name_of(obj.metadata())?;
        let r = self
            .raw()
            .update(apipb::UpdateRequest {
                r#ref: Some(object_ref::<K>(ns, name, sub)),
                json: encode(obj)?,
                field_manager: self.field_manager.to_string(),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    /// Replaces an object; with `metadata.resourceVersion` set, only that version is replaced
    /// (else a 409 Conflict).
    pub async fn update<
        K: Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned,
    >(
        &self,
        ns: &str,
        obj: &K,
    ) -> Result<K, ApiError> {
        self.put(ns, obj, "").await
    }

    /// Replaces an object's status.
    pub async fn update_status<
        K: Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned,
    >(
        &self,
        ns: &str,
        obj: &K,
    ) -> Result<K, ApiError> {
        self.put(ns, obj, "status").await
    }

    /// A list of the resource named by its plural (`pods`, `leases`) as JSON objects, for
    /// components that handle every kind alike (the namespace controller, the garbage
    /// collector); `ns` empty: every namespace.
    pub async fn list_dynamic(
        &self,
        resource: &str,
        ns: &str,
        p: &ListParams,
    ) -> Result<ObjectList<serde_json::Value>, ApiError> {
        let r = self
            .raw()
            .list(apipb::ListRequest {
                resource: resource.to_string(),
                namespace: ns.to_string(),
                label_selector: p.label_selector.clone(),
                field_selector: p.field_selector.clone(),
                limit: p.limit,
                r#continue: p.continue_token.clone(),
            })
            .await
            .map_err(ApiError::from_grpc)?
            .into_inner();
        Ok(ObjectList {
            items: r
                .items
                .iter()
                .map(|i| decode(i))
                .collect::<Result<_, _>>()?,
            resource_version: r.resource_version,
            continue_token: (!r.r#continue.is_empty()).then_some(r.r#continue),
        })
    }

    /// One object of the resource named by its plural, as JSON.
    pub async fn get_dynamic(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let r = self
            .raw()
            .get(apipb::GetRequest {
                r#ref: Some(dynamic_ref(resource, ns, name)),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    /// Deletes an object of the resource named by its plural (see [`ApiClient::delete`]).
    pub async fn delete_dynamic(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        options: Option<&serde_json::Value>,
    ) -> Result<Deleted<serde_json::Value>, ApiError> {
        let r = self
            .raw()
            .delete(apipb::DeleteRequest {
                r#ref: Some(dynamic_ref(resource, ns, name)),
                options_json: match options {
                    Some(o) => encode(o)?,
                    None => Vec::new(),
                },
            })
            .await
            .map_err(ApiError::from_grpc)?
            .into_inner();
        Ok(Deleted {
            object: decode(&r.json)?,
            gone: r.deleted,
        })
    }

    /// Patches an object of the resource named by its plural.
    pub async fn patch_dynamic(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<serde_json::Value, ApiError> {
        let (t, body) = match patch {
            Patch::Json(v) => ("json", v),
            Patch::Merge(v) => ("merge", v),
            Patch::Strategic(v) => ("strategic", v),
        };
        let r = self
            .raw()
            .patch(apipb::PatchRequest {
                r#ref: Some(dynamic_ref(resource, ns, name)),
                patch_type: t.into(),
                patch: encode(body)?,
                field_manager: self.field_manager.to_string(),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    /// Replaces a namespace's `spec.finalizers` through its `finalize` subresource (what
    /// the namespace controller does once the namespace is empty); a namespace being
    /// deleted whose finalizers are all gone is removed.
    pub async fn finalize_namespace(
        &self,
        ns: &k8s_openapi::api::core::v1::Namespace,
    ) -> Result<k8s_openapi::api::core::v1::Namespace, ApiError> {
        self.put("", ns, "finalize").await
    }

    async fn patch_sub<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
        sub: &str,
        patch: &Patch,
    ) -> Result<K, ApiError> {
        let (t, body) = match patch {
            Patch::Json(v) => ("json", v),
            Patch::Merge(v) => ("merge", v),
            Patch::Strategic(v) => ("strategic", v),
        };
        let r = self
            .raw()
            .patch(apipb::PatchRequest {
                r#ref: Some(object_ref::<K>(ns, name, sub)),
                patch_type: t.into(),
                patch: encode(body)?,
                field_manager: self.field_manager.to_string(),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        decode(&r.into_inner().json)
    }

    /// Patches an object.
    pub async fn patch<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<K, ApiError> {
        self.patch_sub(ns, name, "", patch).await
    }

    /// Patches an object's status.
    pub async fn patch_status<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
        patch: &Patch,
    ) -> Result<K, ApiError> {
        self.patch_sub(ns, name, "status", patch).await
    }

    /// Deletes an object; `options` is a meta/v1 DeleteOptions (grace period, preconditions,
    /// propagationPolicy) or `None`.
    pub async fn delete<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
        options: Option<&serde_json::Value>,
    ) -> Result<Deleted<K>, ApiError> {
        let r = self
            .raw()
            .delete(apipb::DeleteRequest {
                r#ref: Some(object_ref::<K>(ns, name, "")),
                options_json: match options {
                    Some(o) => encode(o)?,
                    None => Vec::new(),
                },
            })
            .await
            .map_err(ApiError::from_grpc)?
            .into_inner();
        Ok(Deleted {
            object: decode(&r.json)?,
            gone: r.deleted,
        })
    }

    /// Binds a pod to a node (what the scheduler does).
    pub async fn bind(&self, ns: &str, pod: &str, node: &str) -> Result<(), ApiError> {
        let binding = serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.raw()
            .create(apipb::CreateRequest {
                r#ref: Some(apipb::ObjectRef {
                    resource: "pods".into(),
                    namespace: ns.into(),
                    name: pod.into(),
                    subresource: "binding".into(),
                }),
                json: encode(&binding)?,
                field_manager: self.field_manager.to_string(),
            })
            .await
            .map_err(ApiError::from_grpc)?;
        Ok(())
    }

    /// Watches a collection (`ns` empty: every namespace).
    pub async fn watch<K: Resource + DeserializeOwned>(
        &self,
        ns: &str,
        p: &WatchParams,
    ) -> Result<Watch<K>, ApiError> {
        self.watch_as(K::URL_PATH_SEGMENT, ns, p).await
    }

    /// Watches the resource named by its plural, each object decoded as `K`.
    pub async fn watch_as<K: DeserializeOwned>(
        &self,
        resource: &str,
        ns: &str,
        p: &WatchParams,
    ) -> Result<Watch<K>, ApiError> {
        let request = apipb::WatchRequest {
            resource: resource.to_string(),
            namespace: ns.to_string(),
            label_selector: p.label_selector.clone(),
            field_selector: p.field_selector.clone(),
            resource_version: p.resource_version.clone(),
            allow_bookmarks: p.allow_bookmarks,
            timeout_seconds: p
                .timeout
                .map_or(0, |t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX)),
        };
        let stream = self
            .raw()
            .watch(request.clone())
            .await
            .map_err(ApiError::from_grpc)?
            .into_inner();
        Ok(Watch {
            client: self.clone(),
            last_version: p.resource_version.clone(),
            request,
            stream,
            resumes: 0,
            _kind: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;

    fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        })
    }

    fn wire_event(kind: &str, object: &serde_json::Value) -> apipb::WatchEvent {
        apipb::WatchEvent {
            r#type: kind.to_string(),
            object: serde_json::to_vec(object).unwrap(),
        }
    }

    fn pod(name: &str, rv: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        })
    }

    #[test]
    fn status_in_grpc_details_is_the_error() {
        let s = status(409, "Conflict", "the object has been modified");
        let grpc = tonic::Status::with_details(
            tonic::Code::Aborted,
            "conflict",
            serde_json::to_vec(&s).unwrap().into(),
        );
        let e = ApiError::from_grpc(grpc);
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert_eq!(e.message, "the object has been modified");
        assert_eq!(e.status, Some(s));
        assert!(e.is_conflict() && !e.is_already_exists() && !e.is_not_found());
    }

    #[test]
    fn grpc_status_without_details_maps_its_code() {
        for (code, want) in [
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::Aborted, 409),
            (tonic::Code::InvalidArgument, 400),
            (tonic::Code::DeadlineExceeded, 504),
            (tonic::Code::Unavailable, 503),
            (tonic::Code::Internal, 503),
        ] {
            let e = ApiError::from_grpc(tonic::Status::new(code, "down"));
            assert_eq!(e.code, want, "{code:?}");
            assert_eq!(
                (e.reason.as_str(), e.message.as_str()),
                ("ServiceUnavailable", "down")
            );
            assert_eq!(e.status, None);
        }
        // Details that are not a Status are not taken for one.
        let e = ApiError::from_grpc(tonic::Status::with_details(
            tonic::Code::NotFound,
            "gone",
            br#"{"kind":"Pod"}"#.to_vec().into(),
        ));
        assert_eq!((e.code, e.status), (404, None));
    }

    #[test]
    fn watch_events_decode_and_record_their_version() {
        let mut last = "5".to_string();
        let ev = decode_event::<Pod>(wire_event("ADDED", &pod("a", "7")), &mut last).unwrap();
        assert!(matches!(&ev, WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("a")));
        assert_eq!(last, "7");
        let ev = decode_event::<Pod>(wire_event("MODIFIED", &pod("a", "8")), &mut last).unwrap();
        assert!(matches!(ev, WatchEvent::Modified(_)));
        let ev = decode_event::<Pod>(wire_event("DELETED", &pod("a", "9")), &mut last).unwrap();
        assert!(matches!(ev, WatchEvent::Deleted(_)));
        assert_eq!(last, "9");
        let bookmark = serde_json::json!({"kind": "Pod", "metadata": {"resourceVersion": "12"}});
        let ev = decode_event::<Pod>(wire_event("BOOKMARK", &bookmark), &mut last).unwrap();
        assert!(matches!(ev, WatchEvent::Bookmark(rv) if rv == "12"));
        assert_eq!(last, "12");
    }

    #[test]
    fn watch_errors_keep_the_version_to_resume_from() {
        let mut last = "12".to_string();
        let gone = status(410, "Expired", "too old resource version: 3 (12)");
        let e = decode_event::<Pod>(wire_event("ERROR", &gone), &mut last).unwrap_err();
        assert!(e.is_expired());
        assert_eq!(e.status, Some(gone));
        let e = decode_event::<Pod>(
            apipb::WatchEvent {
                r#type: "ERROR".into(),
                object: b"not json".to_vec(),
            },
            &mut last,
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
        let e =
            decode_event::<Pod>(wire_event("SURPRISE", &pod("a", "13")), &mut last).unwrap_err();
        assert_eq!(e.message, "unknown watch event type SURPRISE");
        // An object that is not the watched kind's shape is an error, not a panic.
        let e = decode_event::<Pod>(
            wire_event("ADDED", &serde_json::json!({"metadata": {"name": 5}})),
            &mut last,
        )
        .unwrap_err();
        assert_eq!(e.code, 500);
        assert!(e.message.starts_with("decode object: "), "{}", e.message);
        assert_eq!(last, "13", "an unknown event still carried a version");
    }

    #[test]
    fn requests_name_the_kinds_resource() {
        let r = object_ref::<Pod>("default", "web-1", "status");
        assert_eq!(
            (
                r.resource.as_str(),
                r.namespace.as_str(),
                r.name.as_str(),
                r.subresource.as_str()
            ),
            ("pods", "default", "web-1", "status")
        );
        assert_eq!(
            object_ref::<Deployment>("ns", "d", "").resource,
            "deployments"
        );
    }

    #[tokio::test]
    async fn connect_takes_host_port_or_url_and_refuses_bad_ones() {
        // Connecting is lazy: nothing listens on these ports.
        ApiClient::connect("127.0.0.1:1").await.unwrap();
        ApiClient::connect("http://127.0.0.1:1").await.unwrap();
        let e = ApiClient::connect("http://bad host:1").await.unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
        assert!(
            e.message.starts_with("apiserver URL http://bad host:1: "),
            "{}",
            e.message
        );
        // A call to nothing answers 503, which callers retry.
        let e = ApiClient::connect("127.0.0.1:1")
            .await
            .unwrap()
            .get::<Pod>("default", "a")
            .await
            .unwrap_err();
        assert_eq!(e.code, 503, "{e}");
    }

    #[test]
    fn update_needs_a_name() {
        let e = name_of(&ObjectMeta::default()).unwrap_err();
        assert_eq!(e.message, "metadata.name is required");
    }
}
