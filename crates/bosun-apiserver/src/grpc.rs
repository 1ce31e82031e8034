//! The gRPC API for Bosun's components (`proto/bosun/api.proto`), over the same registry
//! code path as REST.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bosun_proto::apipb::api_server::Api;
use bosun_proto::apipb::{
    CreateRequest, DeleteRequest, DeleteResponse, GetRequest, ListRequest, ListResponse, Object,
    ObjectRef, PatchRequest, UpdateRequest, WatchEvent, WatchRequest,
};
use futures::Stream;
use serde_json::Value;
use tonic::{Request, Response};

use crate::Shared;
use crate::error::{ApiResult, Status, to_grpc};
use crate::kinds::{self, Kind, Part};
use crate::merge::patch::PatchType;
use crate::registry::managed::{FieldManager, MAX_FIELD_MANAGER};
use crate::registry::{ListOptions, WriteOptions};
use crate::watch::{self, WatchItem, WatchParams};
use bosun_api::selectors::{FieldSelector, LabelSelector};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ApiService {
    shared: Arc<Shared>,
}

impl ApiService {
    /// A service over the apiserver's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        ApiService { shared }
    }
}

fn resource(name: &str) -> ApiResult<&'static dyn Kind> {
    kinds::by_plural(name).ok_or_else(|| Status::bad_request(format!("unknown resource {name:?}")))
}

fn target(r: Option<&ObjectRef>) -> ApiResult<(&'static dyn Kind, &ObjectRef)> {
    let r = r.ok_or_else(|| Status::bad_request("ref is required"))?;
    let kind = resource(&r.resource)?;
    let res = kind.resource();
    if res.namespaced && r.namespace.is_empty() && !r.name.is_empty() {
        return Err(Status::bad_request(format!(
            "{} are namespaced: namespace is required",
            res.plural
        )));
    }
    Ok((kind, r))
}

fn decode(json: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(json)
        .map_err(|e| Status::bad_request(format!("the object could not be decoded as JSON: {e}")))
}

/// The gRPC answer for an operation that yields one object.
fn reply(r: ApiResult<Value>) -> Result<Response<Object>, tonic::Status> {
    r.map(|v| {
        Response::new(Object {
            json: serde_json::to_vec(&v).unwrap_or_default(),
        })
    })
    .map_err(|e| to_grpc(&e))
}

fn selectors(labels: &str, fields: &str) -> ApiResult<(LabelSelector, FieldSelector)> {
    Ok((
        LabelSelector::parse(labels).map_err(|e| Status::bad_request(e.to_string()))?,
        FieldSelector::parse(fields).map_err(|e| Status::bad_request(e.to_string()))?,
    ))
}

/// The write's options: its field manager, or the user agent's program as over REST.
fn write_options<T>(req: &Request<T>, field_manager: &str) -> ApiResult<WriteOptions> {
    let field_manager = if field_manager.is_empty() {
        FieldManager::from_user_agent(
            req.metadata()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
    } else {
        FieldManager::new(field_manager).ok_or_else(|| {
            Status::bad_request(format!(
                "fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER} bytes"
            ))
        })?
    };
    Ok(WriteOptions {
        field_manager,
        ..WriteOptions::default()
    })
}

fn ns_opt(ns: &str) -> Option<&str> {
    (!ns.is_empty()).then_some(ns)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Api for ApiService {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<Object>, tonic::Status> {
        let r = req.into_inner();
        let run = async {
            let (kind, t) = target(r.r#ref.as_ref())?;
            let res = kind.resource();
            let st = &self.shared.registry;
            match t.subresource.as_str() {
                "" | "status" => st.get(kind, &t.namespace, &t.name).await,
                "scale" if res.has_subresource("scale") => {
                    st.get_scale(kind, &t.namespace, &t.name).await
                }
                other => Err(Status::bad_request(format!(
                    "cannot get subresource {other:?}"
                ))),
            }
        };
        reply(run.await)
    }

    async fn list(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListResponse>, tonic::Status> {
        let r = req.into_inner();
        let run = async {
            let kind = resource(&r.resource)?;
            let (labels, fields) = selectors(&r.label_selector, &r.field_selector)?;
            let list = self
                .shared
                .registry
                .list(
                    kind,
                    ns_opt(&r.namespace),
                    &ListOptions {
                        labels,
                        fields,
                        limit: r.limit,
                        continue_token: r.r#continue.clone(),
                        exact_revision: None,
                    },
                )
                .await?;
            Ok::<_, Status>(ListResponse {
                items: list
                    .items
                    .iter()
                    .map(|i| serde_json::to_vec(i).unwrap_or_default())
                    .collect(),
                resource_version: list.revision.to_string(),
                r#continue: list.continue_token.unwrap_or_default(),
            })
        };
        run.await.map(Response::new).map_err(|e| to_grpc(&e))
    }

    async fn create(&self, req: Request<CreateRequest>) -> Result<Response<Object>, tonic::Status> {
        let wo = write_options(&req, &req.get_ref().field_manager);
        let r = req.into_inner();
        let run = async {
            let wo = wo?;
            let (kind, t) = target(r.r#ref.as_ref())?;
            let res = kind.resource();
            let body = decode(&r.json)?;
            let st = &self.shared.registry;
            match (t.name.as_str(), t.subresource.as_str()) {
                (name, "binding") if res.has_subresource("binding") && !name.is_empty() => {
                    st.bind(kind, &t.namespace, name, &body).await?;
                    Ok(crate::registry::subresource::binding_success())
                }
                (_, "") => st
                    .create(kind, &t.namespace, body, wo)
                    .await
                    .map(|(v, _)| v),
                (_, other) => Err(Status::bad_request(format!(
                    "cannot create subresource {other:?}"
                ))),
            }
        };
        reply(run.await)
    }

    async fn update(&self, req: Request<UpdateRequest>) -> Result<Response<Object>, tonic::Status> {
        let wo = write_options(&req, &req.get_ref().field_manager);
        let r = req.into_inner();
        let run = async {
            let wo = wo?;
            let (kind, t) = target(r.r#ref.as_ref())?;
            let res = kind.resource();
            let body = decode(&r.json)?;
            let st = &self.shared.registry;
            if t.subresource == "scale" && res.has_subresource("scale") {
                return st
                    .set_scale(kind, &t.namespace, &t.name, |_| Ok(body.clone()), wo)
                    .await;
            }
            let part = Part::from_subresource(res, &t.subresource)?;
            st.update(kind, &t.namespace, &t.name, body, part, wo)
                .await
                .map(|(v, _)| v)
        };
        reply(run.await)
    }

    async fn patch(&self, req: Request<PatchRequest>) -> Result<Response<Object>, tonic::Status> {
        let wo = write_options(&req, &req.get_ref().field_manager);
        let r = req.into_inner();
        let run = async {
            let wo = wo?;
            let (kind, t) = target(r.r#ref.as_ref())?;
            let res = kind.resource();
            let ptype = PatchType::from_name(&r.patch_type)?;
            let st = &self.shared.registry;
            if t.subresource == "scale" && res.has_subresource("scale") {
                let p = decode(&r.patch)?;
                return st
                    .patch_scale(kind, &t.namespace, &t.name, ptype, &p, wo)
                    .await;
            }
            let part = Part::from_subresource(res, &t.subresource)?;
            st.patch(kind, &t.namespace, &t.name, ptype, &r.patch, part, wo)
                .await
                .map(|(v, _)| v)
        };
        reply(run.await)
    }

    async fn delete(
        &self,
        req: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, tonic::Status> {
        let r = req.into_inner();
        let run = async {
            let (kind, t) = target(r.r#ref.as_ref())?;
            let options = if r.options_json.is_empty() {
                Value::Object(Default::default())
            } else {
                decode(&r.options_json)?
            };
            let d = self
                .shared
                .registry
                .delete(
                    kind,
                    &t.namespace,
                    &t.name,
                    &options,
                    WriteOptions::default(),
                )
                .await?;
            Ok::<_, Status>(DeleteResponse {
                json: serde_json::to_vec(&d.object).unwrap_or_default(),
                deleted: d.gone,
            })
        };
        run.await.map(Response::new).map_err(|e| to_grpc(&e))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        let r = req.into_inner();
        let shared = self.shared.clone();
        let setup = async {
            let kind = resource(&r.resource)?;
            let (labels, fields) = selectors(&r.label_selector, &r.field_selector)?;
            let params = WatchParams {
                namespace: ns_opt(&r.namespace).map(str::to_string),
                labels,
                fields,
                resource_version: r.resource_version.clone(),
                allow_bookmarks: r.allow_bookmarks,
                timeout: u64::try_from(r.timeout_seconds)
                    .ok()
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs),
            };
            watch::start(&shared.registry, kind, params, shared.bookmark_interval).await
        };
        let mut session = setup.await.map_err(|e| to_grpc(&e))?;
        let guard = shared.metrics.watch_started();
        let stream = async_stream::stream! {
            let _guard = guard;
            while let Some(item) = session.next().await {
                match item {
                    // Too slow: end with a status the client resumes from.
                    WatchItem::Error(e) if e.code == 429 => {
                        yield Err(to_grpc(&e));
                        return;
                    }
                    other => {
                        let last = matches!(other, WatchItem::Error(_));
                        yield Ok(WatchEvent {
                            r#type: other.type_str().to_string(),
                            object: other.object_bytes(),
                        });
                        if last {
                            return;
                        }
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
