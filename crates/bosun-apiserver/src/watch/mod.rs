//! One API watch, shared by REST and gRPC: the initial state when asked for, then the
//! changes from the resource's [`WatchCache`](cache::WatchCache) that pass the watch's selectors, bookmarks, and
//! the end at the timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{ApiResult, Status};
use crate::kinds::Kind;
use crate::registry::{ListOptions, Registry, check_field_selector};
pub mod cache;
pub mod cached;

use bosun_api::resources::Resource;
use bosun_api::selectors::{FieldSelector, LabelSelector};
use cache::{CacheEvent, EventType, Subscription, set_resource_version};
use cached::Cached;

/// What a watch asks for.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `resourceVersion`: "" and "0" start with the current objects as ADDED events.
    pub resource_version: String,
    /// Send BOOKMARK events.
    pub allow_bookmarks: bool,
    /// End the watch after this long.
    pub timeout: Option<Duration>,
}

/// One item of a watch.
#[derive(Debug, Clone)]
pub enum WatchItem {
    /// A change (or an initial object).
    Event {
        /// ADDED, MODIFIED or DELETED.
        kind: EventType,
        /// The object, with its JSON (shared with the cache's event when it is that event's
        /// object).
        obj: Arc<Cached>,
    },
    /// Every change up to this version has been sent.
    Bookmark(Value),
    /// The watch ends with this error (410 Expired: re-list; 429: resume).
    Error(Status),
}

impl WatchItem {
    /// The Kubernetes event type.
    pub fn event_type(&self) -> EventType {
        match self {
            WatchItem::Event { kind, .. } => *kind,
            WatchItem::Bookmark(_) => EventType::Bookmark,
            WatchItem::Error(_) => EventType::Error,
        }
    }

    /// The Kubernetes event type's name.
    pub fn type_str(&self) -> &'static str {
        self.event_type().as_str()
    }

    /// The event's object JSON bytes (a `Status` for errors).
    pub fn object_bytes(&self) -> bytes::Bytes {
        match self {
            WatchItem::Event { obj, .. } => obj.json().clone(),
            WatchItem::Bookmark(v) => serde_json::to_vec(v).unwrap_or_default().into(),
            WatchItem::Error(e) => serde_json::to_vec(&e.to_json()).unwrap_or_default().into(),
        }
    }
}

/// A running watch.
pub struct WatchSession {
    res: &'static Resource,
    params: WatchParams,
    initial: VecDeque<Value>,
    sub: Subscription,
    pending: VecDeque<Arc<CacheEvent>>,
    bookmark_due: Option<i64>,
    last_rv: i64,
    deadline: Option<Instant>,
    bookmark_every: Duration,
    next_bookmark: Instant,
    done: bool,
}

impl std::fmt::Debug for WatchSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSession")
            .field("resource", &self.res.plural)
            .field("last_rv", &self.last_rv)
            .finish()
    }
}

/// Starts a watch. A version older than the cache keeps is an `Err` with 410 Expired.
pub async fn start(
    registry: &Registry,
    kind: &'static dyn Kind,
    params: WatchParams,
    bookmark_every: Duration,
) -> ApiResult<WatchSession> {
    let res = kind.resource();
    check_field_selector(res, &params.fields)?;
    let cache = registry.cache(res)?;
    cache.wait_ready(Duration::from_secs(10)).await?;
    let (initial, after) = match params.resource_version.as_str() {
        "" | "0" => {
            let list = registry
                .list(
                    kind,
                    params.namespace.as_deref(),
                    &ListOptions {
                        labels: params.labels.clone(),
                        fields: params.fields.clone(),
                        ..ListOptions::default()
                    },
                )
                .await?;
            (list.items.into(), list.revision)
        }
        rv => (
            VecDeque::new(),
            crate::registry::parse_resource_version(rv)?.unwrap_or(0),
        ),
    };
    let sub = cache.subscribe(after, params.namespace.clone())?;
    let now = Instant::now();
    Ok(WatchSession {
        res,
        deadline: params.timeout.map(|t| now + t),
        params,
        initial,
        sub,
        pending: VecDeque::new(),
        bookmark_due: None,
        last_rv: after,
        bookmark_every,
        next_bookmark: now + bookmark_every,
        done: false,
    })
}

impl WatchSession {
    /// The next item; `None` when the watch is over (timeout, or after an error item).
    pub async fn next(&mut self) -> Option<WatchItem> {
        if self.done {
            return None;
        }
        if let Some(obj) = self.initial.pop_front() {
            return Some(WatchItem::Event {
                kind: EventType::Added,
                obj: Arc::new(Cached::encode(self.res, &obj)),
            });
        }
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if let Some(item) = self.convert(&ev) {
                    return Some(item);
                }
                continue;
            }
            if let Some(rv) = self.bookmark_due.take() {
                let rv = rv.max(self.last_rv);
                self.last_rv = rv;
                if self.params.allow_bookmarks {
                    let mut b = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": {}});
                    set_resource_version(&mut b, rv);
                    return Some(WatchItem::Bookmark(b));
                }
            }
            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.sub.next() => match ev {
                    Ok(ev) => {
                        if let Some(item) = self.convert(&ev) {
                            return Some(item);
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(WatchItem::Error(e));
                    }
                },
                _ = tokio::time::sleep_until(self.next_bookmark) => {
                    self.next_bookmark = Instant::now() + self.bookmark_every;
                    self.queue_bookmark();
                }
                _ = timeout => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    /// Queues a bookmark at the cache's progress, after the events already queued for us.
    fn queue_bookmark(&mut self) {
        let rv = self.sub.progress();
        while let Some(r) = self.sub.try_next() {
            match r {
                Ok(ev) => self.pending.push_back(ev),
                Err(_) => return,
            }
        }
        self.bookmark_due = Some(rv);
    }

    fn convert(&mut self, ev: &Arc<CacheEvent>) -> Option<WatchItem> {
        if ev.rv <= self.last_rv {
            return None;
        }
        self.last_rv = ev.rv;
        let (labels, fields) = (&self.params.labels, &self.params.fields);
        let same = |kind| WatchItem::Event {
            kind,
            obj: ev.obj.clone(),
        };
        if labels.is_empty() && fields.is_empty() {
            return Some(same(ev.kind));
        }
        let cur_ok = ev.obj.matches(labels, fields);
        let prev_ok = ev.prev.as_ref().is_some_and(|p| p.matches(labels, fields));
        match ev.kind {
            EventType::Added => cur_ok.then(|| same(EventType::Added)),
            EventType::Modified => match (cur_ok, prev_ok) {
                (true, true) => Some(same(EventType::Modified)),
                (true, false) => Some(same(EventType::Added)),
                (false, true) => {
                    // It left the selection: the watcher sees it deleted, in its last
                    // matching state.
                    let mut old = ev.prev.as_ref().map(|p| p.value()).unwrap_or_default();
                    set_resource_version(&mut old, ev.rv);
                    Some(WatchItem::Event {
                        kind: EventType::Deleted,
                        obj: Arc::new(Cached::encode(self.res, &old)),
                    })
                }
                (false, false) => None,
            },
            EventType::Deleted => (cur_ok || prev_ok).then(|| same(EventType::Deleted)),
            // The cache records changes only.
            EventType::Bookmark | EventType::Error => None,
        }
    }
}
