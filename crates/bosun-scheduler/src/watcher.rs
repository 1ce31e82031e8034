//! List + watch of one kind into a channel of changes, for the scheduler's cache and queue:
//! client-go's reflector without its store (the scheduler keeps its own cache, the
//! [`Snapshot`](crate::Snapshot)). It lists (in pages), then watches from the list's version;
//! on 410 Expired it lists again and reports the difference (objects gone while it was not
//! watching come as deletions), and it reconnects with back-off (800 ms doubling to 30 s, as
//! client-go) after any other error, such as an apiserver restart.
//!
//! Events are sent to a bounded channel: a slow consumer slows the watch down, never grows
//! memory beyond the channel and the known objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::k8s_openapi::{Metadata, Resource};
use bosun_api_client::{ApiClient, ApiError, ListParams, WatchEvent, WatchParams};
use bosun_runtime::reflector::trimmed;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// A change seen by the watch (the shape of `bosun_runtime::reflector::Event`).
#[derive(Debug)]
pub enum Event<K> {
    /// Created or updated; `old` is the previous version, when known.
    Applied {
        /// The previous version.
        old: Option<Arc<K>>,
        /// The new version.
        new: Arc<K>,
    },
    /// Deleted (its last known state).
    Deleted(Arc<K>),
    /// A (re)list has been applied: every object listed has been reported.
    Resynced,
}

/// Page size of the lists.
const PAGE_SIZE: i64 = 1000;
/// First and longest pause between failed attempts (client-go's reflector).
const BACKOFF_MIN: Duration = Duration::from_millis(800);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn key_of(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => {
            format!("{ns}/{}", meta.name.as_deref().unwrap_or_default())
        }
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// Lists and watches `K` in every namespace until `shutdown` flips, sending changes to `tx`.
/// Returns when `shutdown` flips or the receiver is gone.
pub async fn run<K>(
    client: ApiClient,
    field_selector: String,
    tx: mpsc::Sender<Event<K>>,
    mut shutdown: watch::Receiver<bool>,
) where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    let mut known: HashMap<String, Arc<K>> = HashMap::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        let outcome = tokio::select! {
            r = list_and_watch(&client, &field_selector, &mut known, &tx) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match outcome {
            Ok(Flow::Stop) => return,
            Ok(Flow::Relist) => {
                backoff = BACKOFF_MIN;
                continue;
            }
            Err(e) => {
                warn!(kind = K::KIND, error = %e, retry_in = ?backoff, "list and watch failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Flow {
    /// The receiver is gone.
    Stop,
    /// The watch expired: list again.
    Relist,
}

async fn list_and_watch<K>(
    client: &ApiClient,
    field_selector: &str,
    known: &mut HashMap<String, Arc<K>>,
    tx: &mpsc::Sender<Event<K>>,
) -> Result<Flow, ApiError>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    let mut params = ListParams {
        field_selector: field_selector.to_owned(),
        limit: PAGE_SIZE,
        ..Default::default()
    };
    let mut listed: HashMap<String, Arc<K>> = HashMap::with_capacity(known.len());
    let version = loop {
        let page = client.list::<K>("", &params).await?;
        for obj in page.items {
            listed.insert(key_of(obj.metadata()), Arc::new(trimmed(obj)));
        }
        match page.continue_token {
            Some(token) => params.continue_token = token,
            None => break page.resource_version,
        }
    };
    debug!(kind = K::KIND, objects = listed.len(), %version, "listed");
    // Report the difference with what was known, then the listed state.
    for (key, old) in known.iter() {
        if !listed.contains_key(key) && tx.send(Event::Deleted(old.clone())).await.is_err() {
            return Ok(Flow::Stop);
        }
    }
    for (key, new) in &listed {
        let old = known.get(key).cloned();
        let same = old
            .as_ref()
            .is_some_and(|o| o.metadata().resource_version == new.metadata().resource_version);
        if !same
            && tx
                .send(Event::Applied {
                    old,
                    new: new.clone(),
                })
                .await
                .is_err()
        {
            return Ok(Flow::Stop);
        }
    }
    *known = listed;
    if tx.send(Event::Resynced).await.is_err() {
        return Ok(Flow::Stop);
    }

    let watch_from = |version: String| WatchParams {
        field_selector: field_selector.to_owned(),
        resource_version: version,
        ..Default::default()
    };
    let mut watch = client.watch::<K>("", &watch_from(version)).await?;
    loop {
        let event = match watch.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                // The server ended the watch: go on from where it stopped.
                let version = watch.last_version().to_owned();
                watch = client.watch::<K>("", &watch_from(version)).await?;
                continue;
            }
            Err(e) if e.is_expired() => {
                debug!(kind = K::KIND, "watch expired: listing again");
                return Ok(Flow::Relist);
            }
            Err(e) => return Err(e),
        };
        let sent = match event {
            WatchEvent::Added(obj) | WatchEvent::Modified(obj) => {
                let new = Arc::new(trimmed(obj));
                let old = known.insert(key_of(new.metadata()), new.clone());
                tx.send(Event::Applied { old, new }).await
            }
            WatchEvent::Deleted(obj) => {
                let key = key_of(obj.metadata());
                let last = known.remove(&key).unwrap_or_else(|| Arc::new(trimmed(obj)));
                tx.send(Event::Deleted(last)).await
            }
            WatchEvent::Bookmark(_) => Ok(()),
        };
        if sent.is_err() {
            return Ok(Flow::Stop);
        }
    }
}
