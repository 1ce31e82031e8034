//! One store watch per resource, fanned out to every API watcher.
//!
//! A [`WatchCache`] follows `/registry/<resource>/` with one store watch and keeps the most
//! recent events in a bounded ring. An API watch from version `N` replays the ring's events
//! after `N`, then receives new ones through its own bounded channel. A watcher whose channel
//! is full is dropped with a resumable error (it resumes from the last version it received);
//! a version older than the ring is answered with 410 Expired, and the client re-lists.
//!
//! Events keep objects as their JSON ([`Cached`]), shared (`Arc`) by every watcher, so a
//! thousand watchers cost a thousand channel sends, not a thousand encodes. A change this
//! apiserver writes itself is not decoded at all: the writer announces the bytes it is about
//! to store and what selectors read of the object ([`WatchCache::will_write`]), and the
//! change's event takes those when its bytes are those bytes, with the resourceVersion added
//! to the bytes ([`cached::with_resource_version`]); the previous state of an object is the
//! kept one when its revision matches (below).
//!
//! A cache made [`WatchCache::keeping_objects`] also keeps the latest state of every object it
//! has seen change (by store key, with its revision; deleted objects are forgotten), as
//! kube-apiserver's watch cache does, so that a write can start from it instead of a
//! linearizable read and compare-and-swap on its revision (see `Registry::bind`). It may be
//! stale or incomplete (an object unchanged since the cache started is not in it): a writer
//! uses it only as a first guess that the compare-and-swap checks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bosun_client::{Client, EventKind, GetOptions, WatchOptions};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::cached::{self, Attrs, Cached};
use tracing::{debug, warn};

pub use bosun_api::meta::set_resource_version;
pub use bosun_api::watch::EventType;

use crate::error::{ApiResult, Status};
use bosun_api::resources::Resource;

/// One change to one object, shared by every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    /// The store revision of the change (the object's new resourceVersion).
    pub rv: i64,
    /// What happened.
    pub kind: EventType,
    /// The object after the change; for a delete, its last state with `rv` as resourceVersion.
    pub obj: Arc<Cached>,
    /// The object before the change (for selector transitions), when it existed.
    pub prev: Option<Arc<Cached>>,
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<Arc<CacheEvent>>,
    after: i64,
    namespace: Option<String>,
    closed: Arc<Mutex<Option<Status>>>,
}

/// Objects by store key, with the revision of their latest change.
type KeptObjects = HashMap<Vec<u8>, (i64, Arc<Cached>)>;

/// Writes announced and not yet seen, at most this many: beyond, a write is simply decoded
/// when its change arrives.
const PENDING_MAX: usize = 4_096;

/// By key: the bytes a writer is storing there, what selectors read of the object they
/// encode, and the announcement's number.
type PendingWrites = HashMap<Vec<u8>, (Vec<u8>, Attrs, u64)>;

struct State {
    events: VecDeque<Arc<CacheEvent>>,
    /// Watches from versions `>= floor` can be served.
    floor: i64,
    /// Every change up to this revision has been pushed.
    rv: i64,
    /// False until the store watch is established.
    ready: bool,
    subs: Vec<Sub>,
    next_id: u64,
    /// The latest state of each object seen changing, by store key (when objects are kept):
    /// bounded by the number of objects in the store.
    objects: Option<KeptObjects>,
    /// Writes this apiserver is making, by key: the next change of the key takes its object
    /// from here when the stored bytes are the announced ones.
    pending: PendingWrites,
    /// The number of the last announcement.
    announced: u64,
}

/// The watch cache of one resource.
pub struct WatchCache {
    res: &'static Resource,
    capacity: usize,
    buffer: usize,
    state: Mutex<State>,
    ready: watch::Sender<bool>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for WatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache")
            .field("resource", &self.res.plural)
            .finish()
    }
}

/// A watcher's receiving end; dropping it unsubscribes.
pub struct Subscription {
    cache: Arc<WatchCache>,
    id: u64,
    rx: mpsc::Receiver<Arc<CacheEvent>>,
    closed: Arc<Mutex<Option<Status>>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    /// The next event; `Err` when the watcher was dropped (too slow, or the cache restarted).
    /// Cancel-safe.
    pub async fn next(&mut self) -> ApiResult<Arc<CacheEvent>> {
        match self.rx.recv().await {
            Some(ev) => Ok(ev),
            None => Err(self.closed_reason()),
        }
    }

    /// An event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<ApiResult<Arc<CacheEvent>>> {
        match self.rx.try_recv() {
            Ok(ev) => Some(Ok(ev)),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(self.closed_reason())),
        }
    }

    fn closed_reason(&self) -> Status {
        self.closed
            .lock()
            .clone()
            .unwrap_or_else(|| Status::unavailable("watch cache stopped"))
    }

    /// The revision up to which every change has been queued to this subscription: after
    /// reading it, draining the queue makes a bookmark at this revision truthful.
    pub fn progress(&self) -> i64 {
        self.cache.state.lock().rv
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.state.lock().subs.retain(|s| s.id != self.id);
    }
}

impl WatchCache {
    /// A cache for `res` keeping `capacity` events, with `buffer` queued events per watcher.
    pub fn new(res: &'static Resource, capacity: usize, buffer: usize) -> Arc<Self> {
        Arc::new(WatchCache {
            res,
            capacity: capacity.max(1),
            buffer: buffer.max(1),
            state: Mutex::new(State {
                events: VecDeque::new(),
                floor: i64::MAX,
                rv: 0,
                ready: false,
                subs: Vec::new(),
                next_id: 0,
                objects: None,
                pending: HashMap::new(),
                announced: 0,
            }),
            ready: watch::channel(false).0,
            dropped: AtomicU64::new(0),
        })
    }

    /// Keeps the latest state of the objects seen changing, for [`WatchCache::object`].
    pub fn keeping_objects(self: Arc<Self>) -> Arc<Self> {
        self.state.lock().objects.get_or_insert_with(HashMap::new);
        self
    }

    /// The latest state the cache has seen of the object at store key `key`, with its
    /// revision; `None` when objects are not kept, the cache is not following the store, or
    /// the object has not changed since the cache started. It may be stale: check it with a
    /// compare-and-swap on the revision.
    pub fn object(&self, key: &str) -> Option<(i64, Arc<Cached>)> {
        let st = self.state.lock();
        if !st.ready {
            return None;
        }
        st.objects.as_ref()?.get(key.as_bytes()).cloned()
    }

    /// Records the object at `key` after a change at `rv` (`None`: deleted).
    pub(crate) fn remember(&self, key: &[u8], rv: i64, obj: Option<&Arc<Cached>>) {
        let mut st = self.state.lock();
        let Some(objects) = st.objects.as_mut() else {
            return;
        };
        match obj {
            Some(o) => {
                objects.insert(key.to_vec(), (rv, o.clone()));
            }
            None => {
                objects.remove(key);
            }
        }
    }

    /// Announces that this apiserver is storing `bytes`, the encoding of `obj` (without
    /// resourceVersion), at `key`: the change's event takes what selectors read from `obj`
    /// instead of decoding the bytes. A write that fails takes it back with the returned number
    /// ([`WatchCache::withdraw`]); an announcement whose change never comes is dropped by the
    /// key's next change.
    pub(crate) fn will_write(&self, key: &[u8], bytes: &[u8], obj: &Value) -> u64 {
        let attrs = Attrs::of(self.res, obj);
        let mut st = self.state.lock();
        st.announced += 1;
        let id = st.announced;
        if st.pending.len() < PENDING_MAX || st.pending.contains_key(key) {
            st.pending.insert(key.to_vec(), (bytes.to_vec(), attrs, id));
        }
        id
    }

    /// Takes back announcement `id` at `key` (its write failed).
    pub(crate) fn withdraw(&self, key: &[u8], id: u64) {
        let mut st = self.state.lock();
        if st.pending.get(key).is_some_and(|p| p.2 == id) {
            st.pending.remove(key);
        }
    }

    /// The announced object of a change of `key` that stored `bytes`, at `rv`; any other
    /// announcement for `key` is dropped (its change was another).
    fn take_pending(&self, key: &[u8], bytes: &[u8], rv: i64) -> Option<Cached> {
        let (announced, attrs, _) = self.state.lock().pending.remove(key)?;
        if announced != bytes {
            return None;
        }
        let json = cached::with_resource_version(bytes, rv)?;
        Some(Cached::new(json.into(), attrs))
    }

    /// The kept object at `key` if it is the one of revision `rv`.
    fn kept(&self, key: &[u8], rv: i64) -> Option<Arc<Cached>> {
        let st = self.state.lock();
        match st.objects.as_ref()?.get(key) {
            Some((r, o)) if *r == rv => Some(o.clone()),
            _ => None,
        }
    }

    /// Offers what a read of `key` found (`None`: absent) when objects are kept: it replaces
    /// an older entry, never a newer one. Its guesses stay guesses (see [`WatchCache::object`]):
    /// a read that raced a delete may leave an entry for a gone object until the next read.
    /// `obj` has its resourceVersion set.
    pub(crate) fn remember_read(&self, key: &[u8], read: Option<(i64, &Value)>) {
        let mut st = self.state.lock();
        let Some(objects) = st.objects.as_mut() else {
            return;
        };
        match read {
            Some((rv, obj)) => {
                if objects.get(key).is_none_or(|(have, _)| *have < rv) {
                    let obj = Arc::new(Cached::encode(self.res, obj));
                    objects.insert(key.to_vec(), (rv, obj));
                }
            }
            None => {
                objects.remove(key);
            }
        }
    }

    /// Waits until the store watch is established (bounded by `timeout`).
    pub async fn wait_ready(&self, timeout: Duration) -> ApiResult<()> {
        let mut rx = self.ready.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Status::unavailable(format!(
                "watch cache for {} is not ready",
                self.res.qualified()
            ))),
        }
    }

    /// Subscribes to the changes after revision `after`, in `namespace` (all when `None`).
    pub fn subscribe(
        self: &Arc<Self>,
        after: i64,
        namespace: Option<String>,
    ) -> ApiResult<Subscription> {
        let mut st = self.state.lock();
        if !st.ready {
            return Err(Status::unavailable(format!(
                "watch cache for {} is not ready",
                self.res.qualified()
            )));
        }
        if after < st.floor {
            return Err(Status::expired(format!(
                "too old resource version: {} ({})",
                after, st.floor
            )));
        }
        let replay: Vec<Arc<CacheEvent>> = st
            .events
            .iter()
            .filter(|e| e.rv > after && ns_matches(&namespace, e))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.buffer + replay.len());
        for e in replay {
            // Cannot fail: the channel has room for the whole replay.
            let _ = tx.try_send(e);
        }
        let id = st.next_id;
        st.next_id += 1;
        let closed = Arc::new(Mutex::new(None));
        st.subs.push(Sub {
            id,
            tx,
            after,
            namespace,
            closed: closed.clone(),
        });
        Ok(Subscription {
            cache: self.clone(),
            id,
            rx,
            closed,
        })
    }

    /// Watchers dropped so far for not keeping up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The number of current watchers.
    pub fn watchers(&self) -> usize {
        self.state.lock().subs.len()
    }

    fn push(&self, ev: CacheEvent) {
        let ev = Arc::new(ev);
        let mut st = self.state.lock();
        st.rv = st.rv.max(ev.rv);
        st.subs.retain(|s| {
            if ev.rv <= s.after || !ns_matches(&s.namespace, &ev) {
                return true;
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    *s.closed.lock() = Some(Status::too_many_requests(
                        "watch client too slow: watch again from the last resourceVersion received",
                    ));
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if st.events.len() >= self.capacity
            && let Some(old) = st.events.pop_front()
        {
            st.floor = st.floor.max(old.rv);
        }
        st.events.push_back(ev);
    }

    fn progress_to(&self, rv: i64) {
        let mut st = self.state.lock();
        st.rv = st.rv.max(rv);
    }

    /// (Re)starts following at `start_after`: earlier subscribers are closed with 410 when
    /// the cache lost events.
    pub(crate) fn restart(&self, start_after: i64, lost: bool) {
        let mut st = self.state.lock();
        if lost {
            for s in st.subs.drain(..) {
                *s.closed.lock() = Some(Status::expired(format!(
                    "watch of {} restarted; re-list",
                    self.res.qualified()
                )));
            }
            st.events.clear();
            if let Some(o) = st.objects.as_mut() {
                o.clear();
            }
            st.pending.clear();
            st.floor = start_after;
            st.rv = start_after;
        } else {
            // Continuing where it stopped: the ring and its watchers stay valid.
            st.floor = st.floor.min(start_after);
            st.rv = st.rv.max(start_after);
        }
        st.ready = true;
        drop(st);
        self.ready.send_replace(true);
    }

    /// Ends every watch (the apiserver is stopping): their streams end and clients
    /// watch again elsewhere.
    fn close_all(&self) {
        let mut st = self.state.lock();
        for s in st.subs.drain(..) {
            *s.closed.lock() = Some(Status::unavailable("the apiserver is shutting down"));
        }
        st.ready = false;
    }

    fn mark_not_ready(&self) {
        self.state.lock().ready = false;
        self.ready.send_replace(false);
    }
}

fn ns_matches(ns: &Option<String>, ev: &CacheEvent) -> bool {
    ns.as_deref().is_none_or(|n| n == ev.obj.namespace())
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode_object(value: &[u8], rv: i64) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    set_resource_version(&mut v, rv);
    Some(v)
}

/// Decodes a stored object of `res` at revision `rv` into the cache's form.
fn decode_cached(res: &Resource, stored: &[u8], rv: i64) -> Option<Cached> {
    let obj = decode_object(stored, rv)?;
    let json = match cached::with_resource_version(stored, rv) {
        Some(json) => Bytes::from(json),
        None => Bytes::from(serde_json::to_vec(&obj).ok()?),
    };
    Some(Cached::new(json, Attrs::of(res, &obj)))
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Follows the store under `prefix` into `cache` until `shutdown`; restarts the store watch
/// when it ends, and tells watchers to re-list when events were lost. At shutdown it ends
/// every watch, so that open watch streams do not hold the server up.
pub async fn run(
    cache: Arc<WatchCache>,
    kv: Client,
    prefix: String,
    shutdown: watch::Receiver<bool>,
) {
    follow_until_shutdown(&cache, &kv, &prefix, shutdown).await;
    cache.close_all();
}

async fn follow_until_shutdown(
    cache: &Arc<WatchCache>,
    kv: &Client,
    prefix: &str,
    mut shutdown: watch::Receiver<bool>,
) {
    // After a failure, continue right after the last change pushed.
    let mut resume: Option<i64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match follow(cache, kv, prefix, resume, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                cache.mark_not_ready();
                warn!(resource = cache.res.plural, error = %e, "watch cache lost the store watch; restarting");
            }
        }
        resume = Some(cache.state.lock().rv + 1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One store watch, from `resume` (continuing an earlier one) or, at the start, a ring's
/// worth of history back. `Ok` on shutdown, `Err` when it must be restarted.
async fn follow(
    cache: &Arc<WatchCache>,
    kv: &Client,
    prefix: &str,
    resume: Option<i64>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), bosun_client::Error> {
    let head = kv
        .get(
            prefix.as_bytes().to_vec(),
            GetOptions::new().with_prefix().with_count_only(),
        )
        .await?
        .header
        .map_or(0, |h| h.revision);
    // Start a ring's worth of history back, so watchers can resume across an apiserver
    // restart; if that history is compacted, at the compaction (or the head).
    let back = i64::try_from(cache.capacity).unwrap_or(i64::MAX);
    let mut start = resume.unwrap_or((head - back).max(0) + 1);
    let opts = || {
        WatchOptions::new()
            .with_prefix()
            .with_prev_kv()
            .with_progress_notify()
    };
    let mut stream = match kv.watch(prefix, opts().with_start_revision(start)).await {
        Ok(s) => s,
        Err(bosun_client::Error::Compacted { .. }) => {
            start = head + 1;
            kv.watch(prefix, opts().with_start_revision(start)).await?
        }
        Err(e) => return Err(e),
    };
    // Events are lost only if it could not continue exactly where it stopped.
    cache.restart(start - 1, resume.is_some_and(|r| r != start));
    let mut received = false;
    debug!(
        resource = cache.res.plural,
        from = start,
        head,
        "watch cache following the store"
    );
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            batch = stream.next() => {
                let Some(batch) = batch else {
                    return Err(bosun_client::Error::Unavailable {
                        message: "store watch ended".into(),
                        connect_failed: false,
                    });
                };
                let batch = match batch {
                    // The history asked for is gone (the store watch reports it after it was
                    // created): start again at the compaction, telling watchers to re-list
                    // if some of them expected continuity.
                    Err(bosun_client::Error::Compacted { compact_revision }) if !received => {
                        start = if compact_revision > 0 { compact_revision } else { head + 1 };
                        stream = kv.watch(prefix, opts().with_start_revision(start)).await?;
                        cache.restart(start - 1, true);
                        continue;
                    }
                    other => other?,
                };
                received = true;
                if batch.progress_notify && batch.events.is_empty() {
                    cache.progress_to(batch.revision());
                    continue;
                }
                let res = cache.res;
                for e in batch.events {
                    let rv = e.kv.mod_revision;
                    let prev = e.prev_kv.as_ref().and_then(|p| {
                        cache
                            .kept(&p.key, p.mod_revision)
                            .or_else(|| decode_cached(res, &p.value, p.mod_revision).map(Arc::new))
                    });
                    let (kind, obj) = match e.kind {
                        EventKind::Put => {
                            let Some(obj) = cache
                                .take_pending(&e.kv.key, &e.kv.value, rv)
                                .or_else(|| decode_cached(res, &e.kv.value, rv))
                            else {
                                warn!(key = %String::from_utf8_lossy(&e.kv.key), "undecodable object in the store; skipped");
                                continue;
                            };
                            let obj = Arc::new(obj);
                            let kind = if e.kv.create_revision == rv {
                                EventType::Added
                            } else {
                                EventType::Modified
                            };
                            (kind, obj)
                        }
                        EventKind::Delete => {
                            // Its last state, at the delete's revision.
                            let last = e.prev_kv.as_ref().and_then(|p| {
                                let attrs = prev.as_ref().map(|o| o.attrs().clone());
                                cached::with_resource_version(&p.value, rv)
                                    .zip(attrs)
                                    .map(|(json, attrs)| Cached::new(json.into(), attrs))
                                    .or_else(|| decode_cached(res, &p.value, rv))
                            });
                            let Some(obj) = last else {
                                cache.remember(&e.kv.key, rv, None);
                                continue;
                            };
                            (EventType::Deleted, Arc::new(obj))
                        }
                    };
                    let current = (kind != EventType::Deleted).then_some(&obj);
                    cache.remember(&e.kv.key, rv, current);
                    cache.push(CacheEvent {
                        rv,
                        kind,
                        obj,
                        prev,
                    });
                }
            }
            _ = tick.tick() => {
                // Learn the store's revision even when this resource is quiet (for bookmarks).
                let _ = stream.request_progress().await;
            }
            _ = stopped(shutdown) => return Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bosun_api::resources::by_plural;
    use serde_json::json;

    /// A pod as the cache keeps it.
    fn c(v: Value) -> Arc<Cached> {
        Arc::new(Cached::encode(by_plural("pods").unwrap(), &v))
    }

    fn ev(rv: i64, ns: &str) -> CacheEvent {
        CacheEvent {
            rv,
            kind: EventType::Modified,
            obj: c(json!({"metadata": {"name": "a", "namespace": ns}})),
            prev: None,
        }
    }

    #[tokio::test]
    async fn replay_live_expiry_and_slow_watchers() {
        let cache = WatchCache::new(by_plural("pods").unwrap(), 3, 2);
        assert_eq!(cache.subscribe(0, None).unwrap_err().code, 503);
        cache.restart(10, false);
        for rv in 11..=14 {
            cache.push(ev(rv, "default"));
        }
        // The ring holds 12..=14; a watch from 11 sees 12.. and one from 10 is expired.
        assert_eq!(cache.subscribe(10, None).unwrap_err().code, 410);
        let mut s = cache.subscribe(11, None).unwrap();
        let mut other_ns = cache.subscribe(11, Some("kube-system".into())).unwrap();
        for want in 12..=14 {
            assert_eq!(s.next().await.unwrap().rv, want);
        }
        cache.push(ev(15, "default"));
        assert_eq!(s.next().await.unwrap().rv, 15);
        assert!(other_ns.try_next().is_none());
        assert_eq!(s.progress(), 15);

        // A watcher that does not read is dropped once its buffer (2) is full.
        let mut slow = cache.subscribe(15, None).unwrap();
        for rv in 16..=18 {
            cache.push(ev(rv, "default"));
        }
        assert_eq!(slow.next().await.unwrap().rv, 16);
        assert_eq!(slow.next().await.unwrap().rv, 17);
        assert_eq!(slow.next().await.unwrap_err().code, 429);
        assert_eq!(cache.watchers(), 2);
        drop(other_ns);
        assert_eq!(cache.watchers(), 1);

        // A restart that lost events tells watchers to re-list.
        cache.restart(30, true);
        while let Some(Ok(_)) = s.try_next() {}
        assert_eq!(s.next().await.unwrap_err().code, 410);
    }

    #[test]
    fn future_subscribers_skip_older_events() {
        let cache = WatchCache::new(by_plural("pods").unwrap(), 10, 10);
        cache.restart(0, false);
        let mut s = cache.subscribe(5, None).unwrap();
        cache.push(ev(4, "a"));
        cache.push(ev(6, "a"));
        assert_eq!(s.try_next().unwrap().unwrap().rv, 6);
        assert!(s.try_next().is_none());
    }

    #[test]
    fn kept_objects_follow_changes_and_are_dropped_with_lost_history() {
        let plain = WatchCache::new(by_plural("pods").unwrap(), 10, 10);
        plain.restart(0, false);
        plain.remember(b"/registry/pods/a/x", 3, Some(&c(json!({"v": 1}))));
        assert!(
            plain.object("/registry/pods/a/x").is_none(),
            "objects are not kept"
        );

        let cache = WatchCache::new(by_plural("pods").unwrap(), 10, 10).keeping_objects();
        cache.remember(b"/registry/pods/a/x", 3, Some(&c(json!({"v": 1}))));
        assert!(
            cache.object("/registry/pods/a/x").is_none(),
            "not following the store yet"
        );
        cache.restart(2, false);
        assert_eq!(cache.object("/registry/pods/a/x").unwrap().0, 3);
        cache.remember(b"/registry/pods/a/x", 5, Some(&c(json!({"v": 2}))));
        let (rev, obj) = cache.object("/registry/pods/a/x").unwrap();
        assert_eq!((rev, obj.value()["v"].as_i64()), (5, Some(2)));
        cache.remember(b"/registry/pods/a/x", 6, None);
        assert!(cache.object("/registry/pods/a/x").is_none(), "deleted");
        cache.remember(b"/registry/pods/a/y", 7, Some(&c(json!({}))));
        cache.restart(7, false);
        assert!(
            cache.object("/registry/pods/a/y").is_some(),
            "kept across a continuing restart"
        );
        cache.restart(20, true);
        assert!(
            cache.object("/registry/pods/a/y").is_none(),
            "dropped when events were lost"
        );
        cache.mark_not_ready();
        assert!(cache.object("/registry/pods/a/y").is_none());
    }

    #[test]
    fn an_announced_write_is_taken_by_the_change_that_stored_its_bytes() {
        let cache = WatchCache::new(by_plural("pods").unwrap(), 10, 10);
        let obj = |n: &str| json!({"metadata": {"name": n}});
        let bytes = |n: &str| serde_json::to_vec(&obj(n)).unwrap();
        let (a, b) = (b"/registry/pods/default/a", b"/registry/pods/default/b");
        cache.will_write(a, &bytes("one"), &obj("one"));
        // Another change of the key (someone else's bytes) does not take it, and drops it.
        assert!(cache.take_pending(a, &bytes("two"), 5).is_none());
        assert!(cache.take_pending(a, &bytes("one"), 6).is_none());
        // The change that stored the announced bytes takes it once, with its version.
        cache.will_write(a, &bytes("one"), &obj("one"));
        let x = cache.will_write(b, &bytes("x"), &obj("x"));
        assert!(cache.take_pending(b"other", &bytes("one"), 7).is_none());
        let taken = cache.take_pending(a, &bytes("one"), 7).unwrap();
        let want = json!({"metadata": {"name": "one", "resourceVersion": "7"}});
        assert_eq!(taken.json()[..], serde_json::to_vec(&want).unwrap()[..]);
        assert_eq!(
            taken.attrs().fields()[0],
            ("metadata.name", "one".to_string())
        );
        assert!(cache.take_pending(a, &bytes("one"), 7).is_none());
        // A failed write takes back its own announcement only.
        cache.withdraw(b, x + 1);
        assert_eq!(cache.state.lock().pending.len(), 1);
        cache.withdraw(b, x);
        assert!(cache.take_pending(b, &bytes("x"), 8).is_none());
        // A restart that lost events forgets every announcement.
        cache.will_write(a, &bytes("one"), &obj("one"));
        cache.restart(20, true);
        assert!(cache.take_pending(a, &bytes("one"), 21).is_none());
        // Bounded: beyond the limit a new key is not announced, a known key still is.
        for i in 0..PENDING_MAX + 10 {
            cache.will_write(format!("k{i}").as_bytes(), &bytes("v"), &obj("v"));
        }
        assert_eq!(cache.state.lock().pending.len(), PENDING_MAX);
        cache.will_write(b"k0", &bytes("w"), &obj("w"));
        assert!(cache.take_pending(b"k0", &bytes("w"), 30).is_some());
    }

    #[test]
    fn the_previous_state_is_the_kept_object_of_that_revision() {
        let cache = WatchCache::new(by_plural("pods").unwrap(), 10, 10).keeping_objects();
        cache.restart(10, false);
        let o = c(json!({"metadata": {"name": "a"}}));
        cache.remember(b"k", 11, Some(&o));
        assert!(Arc::ptr_eq(&cache.kept(b"k", 11).unwrap(), &o));
        assert!(cache.kept(b"k", 12).is_none());
        assert!(cache.kept(b"other", 11).is_none());
        let plain = WatchCache::new(by_plural("deployments").unwrap(), 10, 10);
        plain.remember(b"k", 11, Some(&o));
        assert!(plain.kept(b"k", 11).is_none());
    }
}
