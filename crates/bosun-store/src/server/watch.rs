//! The etcd Watch service.
//!
//! One gRPC stream carries many watches. Each watch runs as its own task that replays history
//! from the MVCC store until it reaches the present and then follows the watch hub, falling back
//! to replay whenever it misses a revision. All of a stream's watches send into one bounded
//! channel: a client that does not read stalls only its own watch tasks, whose broadcast
//! receivers then lag and are later served from the store. Nothing grows without bound.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bosun_proto::etcdserverpb::watch_create_request::FilterType;
use bosun_proto::etcdserverpb::watch_server::Watch;
use bosun_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};
use bosun_proto::mvccpb::{Event, event::EventType};
use futures::Stream;
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::Replica;
use crate::error::EtcdError;
use crate::limits::{MAX_WATCHES_PER_STREAM, WATCH_REPLAY_BATCH, WATCH_STREAM_BUFFER};
use crate::mvcc::KeyRange;
use crate::watch::Published;

/// Interval of progress notifications for watches that ask for them (etcd's default).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// The Watch service of one member.
#[derive(Debug, Clone)]
pub struct WatchService {
    pub replica: Arc<Replica>,
    pub progress_interval: Duration,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// One watch's parameters.
#[derive(Debug, Clone)]
struct Spec {
    id: i64,
    key: Vec<u8>,
    end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
}

impl Spec {
    fn range(&self) -> KeyRange<'_> {
        KeyRange::new(&self.key, &self.end)
    }

    fn wants(&self, e: &Event) -> bool {
        let put = e.r#type == EventType::Put as i32;
        if (put && self.no_put) || (!put && self.no_delete) {
            return false;
        }
        e.kv.as_ref()
            .is_some_and(|kv| self.range().contains(&kv.key))
    }
}

/// Sends to the client; false when the client is gone.
async fn send(out: &mpsc::Sender<Result<WatchResponse, Status>>, r: WatchResponse) -> bool {
    out.send(Ok(r)).await.is_ok()
}

struct Watcher {
    replica: Arc<Replica>,
    spec: Spec,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    /// Every revision up to this one has been delivered (shared with progress requests).
    delivered: Arc<AtomicI64>,
    progress_interval: Duration,
}

impl Watcher {
    /// Sends one revision-ordered set of events, split into fragments when asked and large.
    async fn deliver(&self, header_rev: i64, mut events: Vec<Event>) -> bool {
        if events.is_empty() {
            return true;
        }
        let limit = self.replica.cfg.max_request_bytes;
        if self.spec.fragment {
            let total: usize = events.iter().map(Message::encoded_len).sum();
            if total > limit {
                let mut chunk = Vec::new();
                let mut size = 0;
                let mut chunks = Vec::new();
                for e in events {
                    let l = e.encoded_len();
                    if size + l > limit && !chunk.is_empty() {
                        chunks.push(std::mem::take(&mut chunk));
                        size = 0;
                    }
                    size += l;
                    chunk.push(e);
                }
                chunks.push(chunk);
                let n = chunks.len();
                for (i, c) in chunks.into_iter().enumerate() {
                    let r = WatchResponse {
                        header: Some(self.replica.header(header_rev)),
                        watch_id: self.spec.id,
                        fragment: i + 1 < n,
                        events: c,
                        ..Default::default()
                    };
                    if !send(&self.out, r).await {
                        return false;
                    }
                }
                return true;
            }
        }
        events.shrink_to_fit();
        let r = WatchResponse {
            header: Some(self.replica.header(header_rev)),
            watch_id: self.spec.id,
            events,
            ..Default::default()
        };
        send(&self.out, r).await
    }

    fn with_prev(&self, rev: i64, e: &Event) -> Event {
        let mut e = e.clone();
        if self.spec.prev_kv
            && e.prev_kv.is_none()
            && let Some(kv) = &e.kv
        {
            e.prev_kv = self
                .replica
                .shared
                .mvcc
                .value_before(&kv.key, rev)
                .ok()
                .flatten();
        }
        e
    }

    async fn cancel_compacted(&self) {
        let r = WatchResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            watch_id: self.spec.id,
            canceled: true,
            compact_revision: self.replica.shared.mvcc.compact_rev(),
            cancel_reason: EtcdError::Compacted.to_string(),
            ..Default::default()
        };
        send(&self.out, r).await;
    }

    /// Notes that every revision up to `rev` has been delivered (or was not wanted).
    fn advance(&self, rev: i64) {
        self.delivered.fetch_max(rev, Ordering::AcqRel);
    }

    /// Replays revisions `next..` from the store; returns the next revision to deliver, or
    /// `None` when the watch ended.
    async fn replay(&self, mut next: i64) -> Option<i64> {
        let mvcc = &self.replica.shared.mvcc;
        loop {
            // A member behind the revision asked for (restarted, cut off, catching up: where a
            // watcher resumes after a fault) has nothing to replay yet; the revisions from
            // `next` on come through the hub as it applies them. Replaying up to its own
            // revision and going on from there would send revisions below `next`, which etcd
            // never does.
            let current = mvcc.rev();
            if next > current {
                self.advance(current);
                return Some(next);
            }
            let res = mvcc.history(
                self.spec.range(),
                next,
                self.spec.prev_kv,
                WATCH_REPLAY_BATCH,
            );
            let (batches, covered) = match res {
                Ok(x) => x,
                Err(EtcdError::Compacted) => {
                    self.cancel_compacted().await;
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch replay failed");
                    let _ = self.out.send(Err(e.into())).await;
                    return None;
                }
            };
            let mut events = Vec::new();
            for b in batches {
                events.extend(b.events.into_iter().filter(|e| self.spec.wants(e)));
            }
            if !self.deliver(covered, events).await {
                return None;
            }
            self.advance(covered);
            next = covered + 1;
            if covered >= mvcc.rev() {
                return Some(next);
            }
        }
    }

    /// Delivers revisions from `start` on (`None`: those after `now`, the revision at which
    /// `rx` subscribed).
    async fn run(self, mut rx: broadcast::Receiver<Arc<Published>>, now: i64, start: Option<i64>) {
        let mut next = start.unwrap_or(now + 1);
        if start.is_some() {
            match self.replay(next).await {
                Some(n) => next = n,
                None => return,
            }
        } else {
            self.advance(now);
        }
        loop {
            let got = if self.spec.progress_notify {
                match tokio::time::timeout(self.progress_interval, rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        // Not above the store's revision, for a watch that starts later.
                        let rev = (next - 1).min(self.replica.shared.mvcc.rev());
                        let r = WatchResponse {
                            header: Some(self.replica.header(rev)),
                            watch_id: self.spec.id,
                            ..Default::default()
                        };
                        if !send(&self.out, r).await {
                            return;
                        }
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let published: Arc<Published> = match got {
                Ok(p) => p,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match self.replay(next).await {
                        Some(n) => next = n,
                        None => return,
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let batch = match &*published {
                Published::Revision(batch) => batch,
                Published::Restored { rev } => {
                    if *rev >= next {
                        match self.replay(next).await {
                            Some(n) => next = n,
                            None => return,
                        }
                    }
                    continue;
                }
            };
            if batch.rev < next {
                self.advance(batch.rev);
                continue;
            }
            if batch.rev > next {
                // A gap (for instance after a snapshot was installed): replay it.
                match self.replay(next).await {
                    Some(n) => next = n,
                    None => return,
                }
                if batch.rev < next {
                    continue;
                }
            }
            let events: Vec<Event> = batch
                .events
                .iter()
                .filter(|e| self.spec.wants(e))
                .map(|e| self.with_prev(batch.rev, e))
                .collect();
            if !self.deliver(batch.rev, events).await {
                return;
            }
            next = batch.rev + 1;
            self.advance(batch.rev);
        }
    }
}

struct Active {
    task: JoinHandle<()>,
    delivered: Arc<AtomicI64>,
}

/// State of one client stream.
struct StreamState {
    replica: Arc<Replica>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watches: HashMap<i64, Active>,
    next_id: i64,
    progress_interval: Duration,
}

impl Drop for StreamState {
    fn drop(&mut self) {
        for (_, w) in self.watches.drain() {
            w.task.abort();
        }
    }
}

impl StreamState {
    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        self.watches.retain(|_, w| !w.task.is_finished());
        let mut id = c.watch_id;
        let reject = |id: i64, reason: &str| WatchResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if c.key.is_empty() {
            return send(&self.out, reject(-1, &EtcdError::EmptyKey.to_string())).await;
        }
        if self.watches.len() >= MAX_WATCHES_PER_STREAM {
            return send(
                &self.out,
                reject(-1, "bosun: too many watches on one stream"),
            )
            .await;
        }
        if id == 0 {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            id = self.next_id;
            self.next_id += 1;
        } else if self.watches.contains_key(&id) {
            return send(&self.out, reject(id, "mvcc: duplicate watch ID provided")).await;
        }
        let filters: Vec<i32> = c.filters.clone();
        let spec = Spec {
            id,
            key: c.key,
            end: c.range_end,
            prev_kv: c.prev_kv,
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
            fragment: c.fragment,
        };
        // Subscribed while no write runs, so that the watch covers every revision after the
        // one its created response reports (a write that ran before recorded no events if
        // nobody watched then).
        let shared = &self.replica.shared;
        let (rx, now) = shared.mvcc.at_rev(|rev| (shared.hub.subscribe(), rev));
        let created = WatchResponse {
            header: Some(self.replica.header(now)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if !send(&self.out, created).await {
            return false;
        }
        let delivered = Arc::new(AtomicI64::new(0));
        let w = Watcher {
            replica: self.replica.clone(),
            spec,
            out: self.out.clone(),
            delivered: delivered.clone(),
            progress_interval: self.progress_interval,
        };
        let start = (c.start_revision > 0).then_some(c.start_revision);
        let task = tokio::spawn(w.run(rx, now, start));
        self.watches.insert(id, Active { task, delivered });
        true
    }

    async fn cancel(&mut self, id: i64) -> bool {
        if let Some(w) = self.watches.remove(&id) {
            w.task.abort();
            let r = WatchResponse {
                header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
                watch_id: id,
                canceled: true,
                ..Default::default()
            };
            return send(&self.out, r).await;
        }
        true
    }

    /// A progress notification for the whole stream (watch_id -1): a revision up to which
    /// every watch of the stream has delivered everything.
    async fn progress(&mut self) -> bool {
        self.watches.retain(|_, w| !w.task.is_finished());
        let cur = self.replica.shared.mvcc.rev();
        let rev = self
            .watches
            .values()
            .map(|w| w.delivered.load(Ordering::Acquire))
            .min()
            .unwrap_or(cur);
        let r = WatchResponse {
            header: Some(self.replica.header(rev)),
            watch_id: -1,
            ..Default::default()
        };
        send(&self.out, r).await
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let has_leader_required = req
            .metadata()
            .get("hasleader")
            .is_some_and(|v| v.as_bytes() == b"true");
        if has_leader_required && !self.replica.has_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        let mut st = StreamState {
            replica: self.replica.clone(),
            out: tx,
            watches: HashMap::new(),
            next_id: 0,
            progress_interval: self.progress_interval,
        };
        tokio::spawn(async move {
            loop {
                let msg = match input.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => return,
                };
                let alive = match msg.request_union {
                    Some(watch_request::RequestUnion::CreateRequest(c)) => st.create(c).await,
                    Some(watch_request::RequestUnion::CancelRequest(c)) => {
                        st.cancel(c.watch_id).await
                    }
                    Some(watch_request::RequestUnion::ProgressRequest(_)) => st.progress().await,
                    None => true,
                };
                if !alive {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}
