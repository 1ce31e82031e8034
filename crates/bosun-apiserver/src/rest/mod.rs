//! The Kubernetes REST API over HTTP, for kubectl and any Kubernetes client.
//!
//! Paths follow Kubernetes: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
//! for the others, `namespaces/<ns>/` before namespaced resources, a subresource after the
//! name, and the legacy `/watch/` prefix. Every request goes through [`crate::registry`].

mod discovery;
mod exec;
mod logs;
mod openapi;
mod query;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::Shared;
use crate::encoding::table;
use crate::error::{ApiResult, Status};
use crate::kinds::{self, FieldValidation, Kind, Part, Warnings};
use crate::merge::patch::PatchType;
use crate::registry::managed::{FieldManager, MAX_FIELD_MANAGER};
use crate::registry::{ListOptions, ListResult, WriteOptions};
use crate::watch::{self, WatchItem, WatchParams};
use bosun_api::meta::meta_str;
use bosun_api::selectors::{FieldSelector, LabelSelector};
use bosun_api::watch::{self as watch_event, EventType};

pub use discovery::{KUBE_MAJOR, KUBE_MINOR};

/// The REST routes (discovery, health, metrics, and every resource path) added to `base`
/// (the gRPC routes): resource paths are the fallback of everything else.
pub fn router(base: Router, shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/version", get(|| async { json_ok(&discovery::version()) }))
        .route(
            "/api",
            get(|| async { json_ok(&discovery::core_versions()) }),
        )
        .route("/apis", get(|| async { json_ok(&discovery::group_list()) }))
        .route(
            "/openapi/v2",
            get(|headers: HeaderMap| async move { discovery::openapi_v2(&headers) }),
        )
        .route("/openapi/v3", get(|| async { json_ok(&openapi::index()) }))
        .route(
            "/openapi/v3/{*path}",
            get(
                |axum::extract::Path(path): axum::extract::Path<String>| async move {
                    match openapi::document(&path) {
                        Some(doc) => json_ok(doc),
                        None => error_response(&Status::no_route()),
                    }
                },
            ),
        )
        .route("/healthz", get(health))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(health))
        .route("/metrics", get(metrics))
        .with_state(shared.clone());
    let resources = Router::new()
        .fallback(dispatch)
        .with_state(shared.clone())
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            as_status,
        ))
        // pods/exec takes the connection over: it sees the request before anything reads it.
        .layer(axum::middleware::from_fn_with_state(
            shared,
            exec::intercept,
        ));
    base.merge(routes).fallback_service(resources)
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    let probe = s
        .registry
        .store()
        .client()
        .get("health", bosun_client::GetOptions::new().with_count_only())
        .await;
    match probe {
        Ok(_) => "ok".into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("[-]etcd failed: {e}\nhealthz check failed\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&s),
    )
        .into_response()
}

fn json_ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v, &[])
}

fn json_response(code: StatusCode, v: &Value, warnings: &[String]) -> Response {
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response();
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, h);
        }
    }
    r
}

/// Turns the plain-text rejections of the HTTP layer (a body over --max-request-bytes, an
/// unreadable query string) into `Status` objects, so clients print them as API errors.
async fn as_status(State(s): State<Arc<Shared>>, resp: Response) -> Response {
    let code = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if !(code.is_client_error() || code.is_server_error()) || !plain {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let e = match code.as_u16() {
        413 => s.registry.limits().body_too_large(),
        400 => Status::bad_request(text),
        other => Status::new(other, "", text),
    };
    error_response(&e)
}

/// The response for an error: its `Status` with its code.
pub fn error_response(e: &Status) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_json(), &[])
}

/// What a path names.
#[derive(Debug)]
struct Target {
    kind: &'static dyn Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: String,
    legacy_watch: bool,
}

/// Parses a resource path; `Ok(None)` for a discovery path handled here.
fn parse_path(path: &str) -> ApiResult<Result<Target, Value>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g] => return discovery::group(g).map(Err).ok_or_else(Status::no_route),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(Status::no_route()),
    };
    if rest.is_empty() {
        return discovery::resource_list(group, version)
            .map(Err)
            .ok_or_else(Status::no_route);
    }
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let find = |plural: &str| kinds::find(group, version, plural).ok_or_else(Status::no_route);
    let owned = |s: &&str| Some((*s).to_string());
    let t = match rest {
        [r] => Target {
            kind: find(r)?,
            namespace: None,
            name: None,
            sub: String::new(),
            legacy_watch,
        },
        ["namespaces", ns, r, tail @ ..]
            if kinds::find(group, version, r).is_some_and(|x| x.resource().namespaced) =>
        {
            let kind = find(r)?;
            match tail {
                [] => Target {
                    kind,
                    namespace: owned(ns),
                    name: None,
                    sub: String::new(),
                    legacy_watch,
                },
                [name] => Target {
                    kind,
                    namespace: owned(ns),
                    name: owned(name),
                    sub: String::new(),
                    legacy_watch,
                },
                [name, sub] => Target {
                    kind,
                    namespace: owned(ns),
                    name: owned(name),
                    sub: (*sub).to_string(),
                    legacy_watch,
                },
                _ => return Err(Status::no_route()),
            }
        }
        [r, name] => Target {
            kind: find(r)?,
            namespace: None,
            name: owned(name),
            sub: String::new(),
            legacy_watch,
        },
        [r, name, sub] => Target {
            kind: find(r)?,
            namespace: None,
            name: owned(name),
            sub: (*sub).to_string(),
            legacy_watch,
        },
        _ => return Err(Status::no_route()),
    };
    let res = t.kind.resource();
    if res.namespaced && t.name.is_some() && t.namespace.is_none() {
        return Err(Status::no_route());
    }
    if !t.sub.is_empty() && !res.has_subresource(&t.sub) {
        return Err(Status::no_route());
    }
    Ok(Ok(t))
}

/// How the client wants objects: plain JSON or a Table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    Json,
    Table { object: IncludeObject },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn render_of(headers: &HeaderMap, q: &HashMap<String, String>) -> ApiResult<Render> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The first acceptable media type wins, as in Kubernetes.
    for part in accept.split(',') {
        let p = part.trim();
        if p.contains("as=Table") {
            if p.contains("g=meta.k8s.io")
                && (p.contains("v=v1;") || p.ends_with("v=v1") || p.contains("v=v1beta1"))
            {
                let object = match q.get("includeObject").map(String::as_str) {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Ok(Render::Table { object });
            }
            continue;
        }
        if p.contains("as=") {
            // Other transformations (PartialObjectMetadata, discovery formats): not served.
            continue;
        }
        if p.is_empty()
            || p.starts_with("application/json")
            || p.starts_with("*/*")
            || p.starts_with("application/*")
        {
            return Ok(Render::Json);
        }
    }
    if accept.trim().is_empty() || accept.contains("protobuf") || accept.contains("yaml") {
        return Ok(Render::Json);
    }
    Err(Status::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept})"
    )))
}

fn write_options(q: &HashMap<String, String>, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(Status::bad_request(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    // kube-apiserver's default manager is the user agent's program (`kubectl`).
    let field_manager = match q.get("fieldManager").map(String::as_str) {
        None | Some("") => FieldManager::from_user_agent(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        ),
        Some(m) => FieldManager::new(m).ok_or_else(|| {
            Status::bad_request(format!(
                "fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER} bytes"
            ))
        })?,
    };
    Ok(WriteOptions {
        dry_run,
        field_validation: FieldValidation::parse(
            q.get("fieldValidation").map(String::as_str).unwrap_or(""),
        )?,
        field_manager,
    })
}

fn selectors(q: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = match q.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?,
        None => LabelSelector::everything(),
    };
    let fields = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?,
        None => FieldSelector::default(),
    };
    Ok((labels, fields))
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        Status::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

/// Every resource request.
async fn dispatch(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.metrics.request(method.as_str());
    match handle(&s, &method, &uri, &q, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            s.metrics.error(e.code);
            error_response(&e)
        }
    }
}

async fn handle(
    s: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let t = match parse_path(uri.path())? {
        Ok(t) => t,
        Err(doc) if *method == Method::GET => return Ok(json_ok(&doc)),
        Err(_) => {
            return Err(Status::method_not_allowed(
                "only GET is served on discovery paths",
            ));
        }
    };
    let kind = t.kind;
    let res = kind.resource();
    let ns = t.namespace.clone().unwrap_or_default();
    // Typed clients (kubectl 1.32's generators) send protobuf; it becomes the same JSON.
    let body = request_json(kind, method, headers, body)?;
    let st = &s.registry;
    match (method.clone(), t.name.as_deref(), t.sub.as_str()) {
        (Method::GET, None, "") => {
            let (labels, fields) = selectors(q)?;
            let render = render_of(headers, q)?;
            // A negative limit, as in Kubernetes, means no limit.
            let limit = query::int_param(q, "limit")?.unwrap_or(0);
            let timeout = query::int_param(q, "timeoutSeconds")?;
            let watching = t.legacy_watch || query::bool_param(q, "watch");
            query::check_list_options(q, watching)?;
            if watching {
                return watch_response(s, kind, t.namespace, labels, fields, q, timeout, render)
                    .await;
            }
            let opts = ListOptions {
                labels,
                fields,
                limit,
                continue_token: q.get("continue").cloned().unwrap_or_default(),
                exact_revision: match q.get("resourceVersionMatch").map(String::as_str) {
                    Some("Exact") => crate::registry::parse_resource_version(
                        q.get("resourceVersion").map(String::as_str).unwrap_or(""),
                    )?,
                    _ => None,
                },
            };
            let list = st.list(kind, t.namespace.as_deref(), &opts).await?;
            Ok(json_ok(&render_list(kind, list, render)))
        }
        (Method::GET, Some(name), "") if t.legacy_watch => {
            let (labels, _) = selectors(q)?;
            let fields = FieldSelector::parse(&format!("metadata.name={name}"))
                .map_err(|e| Status::bad_request(e.to_string()))?;
            let render = render_of(headers, q)?;
            let timeout = query::int_param(q, "timeoutSeconds")?;
            query::check_list_options(q, true)?;
            watch_response(s, kind, t.namespace, labels, fields, q, timeout, render).await
        }
        (Method::GET, Some(name), "" | "status") => {
            let render = render_of(headers, q)?;
            let obj = st.get(kind, &ns, name).await?;
            Ok(json_ok(&render_one(kind, obj, render)))
        }
        (Method::GET, Some(name), "scale") => Ok(json_ok(&st.get_scale(kind, &ns, name).await?)),
        (Method::GET, Some(name), "log") => logs::pod_log(s, kind, &ns, name, q).await,
        (Method::POST, None, "") => {
            let wo = write_options(q, headers)?;
            let (obj, w) = st.create(kind, &ns, parse_body(&body)?, wo).await?;
            Ok(json_response(StatusCode::CREATED, &obj, &w))
        }
        (Method::POST, Some(name), "binding") => {
            st.bind(kind, &ns, name, &parse_body(&body)?).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &crate::registry::subresource::binding_success(),
                &[],
            ))
        }
        (Method::PUT, Some(name), "scale") => {
            let scale = parse_body(&body)?;
            let out = st
                .set_scale(
                    kind,
                    &ns,
                    name,
                    |_| Ok(scale.clone()),
                    write_options(q, headers)?,
                )
                .await?;
            Ok(json_ok(&out))
        }
        (Method::PUT, Some(name), sub) => {
            let part = Part::from_subresource(res, sub)?;
            let (obj, w) = st
                .update(
                    kind,
                    &ns,
                    name,
                    parse_body(&body)?,
                    part,
                    write_options(q, headers)?,
                )
                .await?;
            Ok(json_response(StatusCode::OK, &obj, &w))
        }
        (Method::PATCH, Some(name), sub) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ptype = PatchType::from_content_type(ct)?;
            let wo = write_options(q, headers)?;
            if sub == "scale" {
                let p = parse_body(&body)?;
                let out = st.patch_scale(kind, &ns, name, ptype, &p, wo).await?;
                return Ok(json_ok(&out));
            }
            let part = Part::from_subresource(res, sub)?;
            let (obj, w): (Value, Warnings) =
                st.patch(kind, &ns, name, ptype, &body, part, wo).await?;
            Ok(json_response(StatusCode::OK, &obj, &w))
        }
        (Method::DELETE, Some(name), "") => {
            let options = delete_options(&body, q)?;
            let d = st
                .delete(kind, &ns, name, &options, write_options(q, headers)?)
                .await?;
            if d.gone && !kind.returns_deleted_object() {
                return Ok(json_ok(&json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": res.group, "kind": res.plural, "uid": meta_str(&d.object, "uid")},
                })));
            }
            Ok(json_ok(&d.object))
        }
        // Kubernetes serves no delete-collection on some resources (namespaces): the verb is
        // not routed, and go-restful's 405 says only this.
        (Method::DELETE, None, "") if !res.delete_collection => Err(Status::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
        (Method::DELETE, None, "") => {
            let options = delete_options(&body, q)?;
            let (labels, fields) = selectors(q)?;
            let list = ListOptions {
                labels,
                fields,
                ..ListOptions::default()
            };
            let items = st
                .delete_collection(
                    kind,
                    t.namespace.as_deref(),
                    &list,
                    &options,
                    write_options(q, headers)?,
                )
                .await?;
            Ok(json_ok(&json!({
                "kind": format!("{}List", res.kind),
                "apiVersion": res.api_version(),
                "metadata": {},
                "items": items,
            })))
        }
        _ => Err(Status::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            method,
            uri.path()
        ))),
    }
}

/// The request body as JSON: JSON as is, Kubernetes protobuf decoded for the resource's kind.
fn request_json(
    kind: &dyn Kind,
    method: &Method,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Bytes> {
    if body.is_empty() || *method == Method::PATCH {
        return Ok(body);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    match ct.split(';').next().unwrap_or_default().trim() {
        "application/json" | "" | "*/*" => Ok(body),
        crate::encoding::protobuf::CONTENT_TYPE
            if *method == Method::POST || *method == Method::PUT =>
        {
            let obj = kind
                .decode_protobuf(&body)
                .map_err(|e| Status::bad_request(format!("decoding the protobuf body: {e}")))?;
            Ok(Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()))
        }
        other => Err(Status::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

/// DeleteOptions from the body, or from query parameters.
fn delete_options(body: &Bytes, q: &HashMap<String, String>) -> ApiResult<Value> {
    let mut o = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    if let Some(g) = query::int_param(q, "gracePeriodSeconds")? {
        o["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = q.get("propagationPolicy") {
        o["propagationPolicy"] = json!(p);
    }
    Ok(o)
}

fn list_json(res: &bosun_api::Resource, list: ListResult) -> Value {
    let mut meta = json!({"resourceVersion": list.revision.to_string()});
    if let Some(c) = list.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = list.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": list.items,
    })
}

fn render_list(kind: &dyn Kind, list: ListResult, render: Render) -> Value {
    match render {
        Render::Json => list_json(kind.resource(), list),
        Render::Table { object } => {
            let mut meta = json!({"resourceVersion": list.revision.to_string()});
            if let Some(c) = &list.continue_token {
                meta["continue"] = json!(c);
            }
            let now = jiff::Timestamp::now();
            let rows: Vec<Value> = list
                .items
                .iter()
                .map(|o| row(kind, o, object, now))
                .collect();
            table_json(kind, meta, rows, true)
        }
    }
}

fn render_one(kind: &dyn Kind, obj: Value, render: Render) -> Value {
    match render {
        Render::Json => obj,
        Render::Table { object } => {
            let meta = json!({"resourceVersion": meta_str(&obj, "resourceVersion")});
            let r = row(kind, &obj, object, jiff::Timestamp::now());
            table_json(kind, meta, vec![r], true)
        }
    }
}

fn table_json(kind: &dyn Kind, meta: Value, rows: Vec<Value>, columns: bool) -> Value {
    let cols: Vec<Value> = if columns {
        kind.table_columns()
            .iter()
            .map(table::Column::to_json)
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": cols,
        "rows": rows,
    })
}

fn row(kind: &dyn Kind, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let mut r = json!({"cells": kind.table_cells(obj, now)});
    if let Some(c) = kind.table_row_conditions(obj) {
        r["conditions"] = c;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            });
        }
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A watch as a chunked response: one JSON event per line.
#[allow(clippy::too_many_arguments)]
async fn watch_response(
    s: &Arc<Shared>,
    kind: &'static dyn Kind,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &HashMap<String, String>,
    timeout_seconds: Option<i64>,
    render: Render,
) -> ApiResult<Response> {
    let timeout = match timeout_seconds {
        // Kubernetes ends watches without a timeout (or with 0) after a randomized 30-60
        // minutes; clients re-watch. A negative one ends the watch at once.
        None | Some(0) => {
            Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7)
        }
        Some(t) => Duration::from_secs(u64::try_from(t).unwrap_or(0)),
    };
    let params = WatchParams {
        namespace,
        labels,
        fields,
        resource_version: q.get("resourceVersion").cloned().unwrap_or_default(),
        allow_bookmarks: query::bool_param(q, "allowWatchBookmarks"),
        timeout: Some(timeout),
    };
    let session = match watch::start(&s.registry, kind, params, s.bookmark_interval).await {
        Ok(w) => Some(w),
        // A version too old is reported in the stream, as Kubernetes does.
        Err(e) if e.code == 410 => None,
        Err(e) => return Err(e),
    };
    let expired = session.is_none().then(|| {
        Status::expired(format!(
            "too old resource version: {}",
            q.get("resourceVersion").cloned().unwrap_or_default()
        ))
    });
    let watchers = s.metrics.watch_started();
    let stream = async_stream::stream! {
        let _guard = watchers;
        if let Some(e) = expired {
            yield Ok::<_, std::convert::Infallible>(event_line(EventType::Error, &e.to_json()));
            return;
        }
        let Some(mut session) = session else { return };
        let mut first = true;
        while let Some(item) = session.next().await {
            match (&item, render) {
                // A slow watcher is cut off, and every watch ends when the server stops: the
                // client watches again from its last version.
                (WatchItem::Error(e), _) if e.code == 429 || e.code == 503 => return,
                (WatchItem::Error(e), _) => {
                    yield Ok(event_line(EventType::Error, &e.to_json()));
                    return;
                }
                (WatchItem::Event { obj, .. }, Render::Table { object }) => {
                    let obj = &obj.value();
                    let meta = json!({"resourceVersion": meta_str(obj, "resourceVersion")});
                    let t = table_json(kind, meta, vec![row(kind, obj, object, jiff::Timestamp::now())], first);
                    first = false;
                    yield Ok(event_line(item.event_type(), &t));
                }
                (WatchItem::Bookmark(b), _) => yield Ok(event_line(EventType::Bookmark, b)),
                (WatchItem::Event { .. }, Render::Json) => {
                    // The object's JSON is shared by every watcher: encoded once.
                    yield Ok(Bytes::from(watch_event::event_line(item.event_type(), &item.object_bytes())));
                }
            }
        }
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn event_line(type_: EventType, obj: &Value) -> Bytes {
    let obj = serde_json::to_vec(obj).unwrap_or_default();
    Bytes::from(watch_event::event_line(type_, &obj))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(p: &str) -> Target {
        parse_path(p).unwrap().unwrap()
    }

    #[test]
    fn paths() {
        let t = target("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            (
                t.kind.resource().plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_str()
            ),
            ("pods", Some("default"), Some("web"), "log")
        );
        let t = target("/api/v1/namespaces/default");
        assert_eq!(
            (t.kind.resource().plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = target("/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (t.kind.resource().plural, t.name.as_deref(), t.sub.as_str()),
            ("namespaces", Some("kube-system"), "status")
        );
        let t = target("/api/v1/namespaces/x/events");
        assert_eq!(
            (t.kind.resource().plural, t.namespace.as_deref(), t.name),
            ("events", Some("x"), None)
        );
        let t = target("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(t.legacy_watch && t.kind.resource().plural == "deployments");
        let t = target("/api/v1/pods");
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse_path("/api/v1/namespaces/default/widgets").is_err());
        assert!(parse_path("/api/v1/pods/x").is_err());
        assert!(parse_path("/apis/apps/v1/namespaces/a/deployments/d/log").is_err());
        assert!(parse_path("/api/v1").unwrap().is_err());
    }

    #[test]
    fn accept_negotiation() {
        let q = HashMap::new();
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert_eq!(
            render_of(&h, &q).unwrap(),
            Render::Table {
                object: IncludeObject::Metadata
            }
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(render_of(&h, &q).unwrap(), Render::Json);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf, */*"),
        );
        assert_eq!(render_of(&h, &q).unwrap(), Render::Json);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert_eq!(render_of(&h, &q).unwrap_err().code, 406);
    }
}
