//! The namespace controller's loop (`pkg/controller/namespace`): a namespace being deleted
//! whose `spec.finalizers` holds `kubernetes` has the objects of every namespaced resource
//! of the resource table deleted through the API (so pods on nodes go gracefully, and
//! owners' propagation finalizers are honoured), its deletion conditions set through
//! `namespaces/status`, and, once nothing is left, `kubernetes` removed through
//! `namespaces/finalize`: the apiserver then removes the namespace. The decisions are
//! [`crate::namespace`]'s.

use anyhow::anyhow;
use bosun_api::resources::{RESOURCES, Resource};
use bosun_api_client::{ApiClient, ListParams};
use bosun_runtime::controller::Action as Next;
use bosun_runtime::queue::{QueueConfig, WorkQueue};
use bosun_runtime::reflector::{Event, Store};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use std::time::Duration;
use tracing::{debug, info};

use super::{Metrics, Reconciler};
use crate::namespace::{Content, FINALIZER, conditions, finalized, merge_conditions};

/// Objects listed per page while emptying a namespace.
const PAGE: i64 = 500;

/// The namespace controller: its queue of namespace names.
pub struct NamespaceController {
    client: ApiClient,
    namespaces: Store<Namespace>,
    queue: WorkQueue<String>,
    metrics: Metrics,
}

impl std::fmt::Debug for NamespaceController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceController")
            .finish_non_exhaustive()
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl NamespaceController {
    /// A controller writing through `client`, reading `namespaces`.
    pub fn new(client: ApiClient, namespaces: Store<Namespace>, metrics: Metrics) -> Self {
        NamespaceController {
            client,
            namespaces,
            queue: WorkQueue::with_metrics("namespace", QueueConfig::default(), &metrics.queue),
            metrics,
        }
    }

    /// Namespace events: one being deleted is queued.
    pub fn on_namespace(&self, ev: &Event<Namespace>) {
        if let Event::Applied { new, .. } = ev
            && new.metadata.deletion_timestamp.is_some()
            && let Some(name) = &new.metadata.name
        {
            self.queue.add(name.clone());
        }
    }

    /// An object of a watched kind is gone: a namespace waiting for its content looks again
    /// now rather than after its estimate (Kubernetes only polls; this is sooner, not
    /// different).
    pub fn on_content<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(&self, ev: &Event<K>) {
        if let Event::Deleted(o) = ev
            && let Some(ns) = o.metadata().namespace.as_deref()
            && self
                .namespaces
                .get("", ns)
                .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
        {
            self.queue.add(ns.to_string());
        }
    }

    /// Every object of `res` in `ns`, page by page.
    async fn list_all(&self, res: &Resource, ns: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut p = ListParams {
            limit: PAGE,
            ..ListParams::default()
        };
        loop {
            let page = self.client.list_dynamic(res.plural, ns, &p).await?;
            out.extend(page.items);
            match page.continue_token {
                Some(c) => p.continue_token = c,
                None => return Ok(out),
            }
        }
    }

    /// `deleteAllContent`: deletes what is not yet being deleted, then counts what is left.
    async fn delete_content(&self, ns: &str) -> Content {
        let mut content = Content::default();
        for res in RESOURCES.iter().filter(|r| r.namespaced) {
            let resource = res.qualified();
            let items = match self.list_all(res, ns).await {
                Ok(items) => items,
                Err(e) => {
                    content.failures.push(format!("{resource}: {e}"));
                    continue;
                }
            };
            if items.is_empty() {
                continue;
            }
            let mut deleted = false;
            for obj in &items {
                if !meta_str(obj, "deletionTimestamp").is_empty() {
                    continue;
                }
                let options = json!({"preconditions": {"uid": meta_str(obj, "uid")}});
                match self
                    .client
                    .delete_dynamic(res.plural, ns, meta_str(obj, "name"), Some(&options))
                    .await
                {
                    Ok(_) => deleted = true,
                    Err(e) if e.is_not_found() || e.is_conflict() => deleted = true,
                    Err(e) => content.failures.push(format!("{resource}: {e}")),
                }
            }
            let left = if deleted {
                match self.list_all(res, ns).await {
                    Ok(items) => items,
                    Err(e) => {
                        content.failures.push(format!("{resource}: {e}"));
                        continue;
                    }
                }
            } else {
                items
            };
            for obj in &left {
                content.record_remaining(&resource, obj);
            }
        }
        content
    }

    async fn sync(&self, name: &str) -> anyhow::Result<Next> {
        let ns = match self.client.get::<Namespace>("", name).await {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() => return Ok(Next::Done),
            Err(e) => return Err(anyhow!(e)),
        };
        let spec_finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if ns.metadata.deletion_timestamp.is_none()
            || !spec_finalizers.iter().any(|f| f == FINALIZER)
        {
            return Ok(Next::Done);
        }
        let content = self.delete_content(name).await;
        debug!(namespace = name, ?content, "deleted namespace content");
        // The conditions, through namespaces/status.
        let mut v = serde_json::to_value(&ns)?;
        let existing: Vec<Value> = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let now = bosun_api::meta::now_rfc3339();
        let merged = merge_conditions(&existing, &conditions(&content), &now);
        let ns = if merged == existing {
            ns
        } else {
            v["status"]["conditions"] = json!(merged);
            let with: Namespace = serde_json::from_value(v)?;
            self.client.update_status("", &with).await?
        };
        if !content.done() {
            return Ok(Next::RequeueAfter(Duration::from_secs(
                content.requeue_after_seconds(),
            )));
        }
        let mut fin = ns.clone();
        fin.spec.get_or_insert_with(Default::default).finalizers =
            Some(finalized(&spec_finalizers));
        info!(
            namespace = name,
            "namespace emptied; removing its finalizer"
        );
        match self.client.finalize_namespace(&fin).await {
            Ok(_) => Ok(Next::Done),
            Err(e) if e.is_not_found() => Ok(Next::Done),
            Err(e) => Err(anyhow!(e)),
        }
    }
}

impl Reconciler for NamespaceController {
    type Key = String;
    const NAME: &'static str = "namespace";

    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn reconcile(&self, name: String) -> anyhow::Result<Next> {
        self.sync(&name).await
    }
}
