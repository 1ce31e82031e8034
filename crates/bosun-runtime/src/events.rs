//! Events (`core/v1` Event objects) as client-go's `EventRecorder` writes them through its
//! broadcaster and `EventCorrelator`, so that `kubectl get events` and `kubectl describe`
//! show them as they show Kubernetes' own.
//!
//! Recording never blocks and never fails: a [`Recorder`] puts the event on a bounded queue
//! (dropping and counting it when full) and writer tasks write it. An event is named
//! `<object>.<hex nanoseconds>`, carries `source.component`/`host`, `reportingComponent`/
//! `reportingInstance`, `firstTimestamp`, `lastTimestamp` and `count`. The same (object,
//! type, reason, message) again within 10 minutes is the same Event with `count + 1`
//! (a patch of count, lastTimestamp and message), as client-go's `eventLogger`. Each object
//! may record 25 events at once, then one per 5 minutes (client-go's spam filter).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use bosun_api_client::k8s_openapi::{Metadata, Resource};
use bosun_api_client::{ApiClient, ApiError, Patch};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Events queued per writer before new ones are dropped.
const QUEUE_PER_WRITER: usize = 1024;
/// Writer tasks; an object's events always go to the same one, in order.
const WRITERS: usize = 4;
/// How long an event can be repeated into the same Event (client-go's 10 minutes).
const REPEAT_WINDOW: Duration = Duration::from_secs(600);
/// Events remembered for repetition, per writer (client-go's LRU holds 4096).
const CACHE_PER_WRITER: usize = 4096;
/// Spam filter: burst and refill interval per object (client-go: 25, one per 5 minutes).
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Longest message kept (bytes); longer ones are cut at a character boundary.
const MAX_MESSAGE: usize = 1024;
/// Attempts per write (client-go tries 12 times 10 s apart; a component here would rather
/// drop an event than hold its queue for minutes).
const ATTEMPTS: u32 = 3;

/// A reference to `obj` for an Event's `involvedObject`: apiVersion, kind, namespace, name,
/// uid and resourceVersion, which `kubectl describe` selects events by.
pub fn object_ref<K: Resource + Metadata<Ty = ObjectMeta>>(obj: &K) -> ObjectReference {
    let m = obj.metadata();
    ObjectReference {
        api_version: Some(K::API_VERSION.to_owned()),
        kind: Some(K::KIND.to_owned()),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        field_path: None,
    }
}

/// Records events for a component. Cheap to clone; the writer tasks end once every clone is
/// dropped and what was queued is written.
#[derive(Clone, Debug)]
pub struct Recorder {
    queues: Arc<Vec<mpsc::Sender<Record>>>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
    at: Timestamp,
}

impl Recorder {
    /// A recorder writing as `component` (`bosun-scheduler`, ...) on `host`, and the task
    /// that writes its events.
    pub fn new(client: ApiClient, component: &str, host: &str) -> (Recorder, JoinHandle<()>) {
        let source = Arc::new(Source {
            component: component.to_owned(),
            host: host.to_owned(),
        });
        let mut queues = Vec::with_capacity(WRITERS);
        let mut writers = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let (tx, rx) = mpsc::channel(QUEUE_PER_WRITER);
            queues.push(tx);
            let w = Writer {
                client: client.clone(),
                source: source.clone(),
                correlator: Correlator::default(),
            };
            writers.push(tokio::spawn(w.run(rx)));
        }
        let task = tokio::spawn(async move {
            for w in writers {
                let _ = w.await;
            }
        });
        (
            Recorder {
                queues: Arc::new(queues),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            task,
        )
    }

    /// Records a `Normal` event about `obj`.
    pub fn normal(&self, obj: &ObjectReference, reason: &str, message: String) {
        self.record(obj, "Normal", reason, message);
    }

    /// Records a `Warning` event about `obj`.
    pub fn warning(&self, obj: &ObjectReference, reason: &str, message: String) {
        self.record(obj, "Warning", reason, message);
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn record(&self, obj: &ObjectReference, type_: &'static str, reason: &str, message: String) {
        let mut h = DefaultHasher::new();
        (&obj.uid, &obj.namespace, &obj.name).hash(&mut h);
        let shard = usize::try_from(h.finish() % WRITERS as u64).unwrap_or(0);
        let r = Record {
            object: obj.clone(),
            type_,
            reason: reason.to_owned(),
            message: truncate(message),
            at: Timestamp::now(),
        };
        if self.queues[shard].try_send(r).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, "event queue full; dropping events");
            }
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[derive(Debug)]
struct Source {
    component: String,
    host: String,
}

/// An involved object: kind, namespace, name, uid, fieldPath.
type ObjectKey = [Option<String>; 5];

/// What identifies "the same event again".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    object: ObjectKey,
    type_: &'static str,
    reason: String,
    message: String,
}

impl Key {
    fn of(r: &Record) -> Key {
        let o = &r.object;
        Key {
            object: [
                o.kind.clone(),
                o.namespace.clone(),
                o.name.clone(),
                o.uid.clone(),
                o.field_path.clone(),
            ],
            type_: r.type_,
            reason: r.reason.clone(),
            message: r.message.clone(),
        }
    }
}

/// An Event already written.
#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
    first: Timestamp,
    last_seen: Instant,
}

/// What to write for a record.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Too many events for this object lately: drop it.
    Spam,
    /// A new Event.
    Create,
    /// The same Event again: count and lastTimestamp.
    Repeat {
        namespace: String,
        name: String,
        count: i32,
        first: Timestamp,
    },
}

/// client-go's `EventCorrelator` minus the message aggregator: the spam filter and the
/// repetition cache, both bounded.
#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
    /// Tokens per object, as of when.
    spam: HashMap<[Option<String>; 3], (f64, Instant)>,
}

impl Correlator {
    fn decide(&mut self, key: &Key, now: Instant) -> Decision {
        let obj = [
            key.object[1].clone(),
            key.object[2].clone(),
            key.object[3].clone(),
        ];
        if self.spam.len() >= CACHE_PER_WRITER && !self.spam.contains_key(&obj) {
            // Forget objects whose bucket is full again (they lose nothing by it).
            let full_after = SPAM_REFILL.mul_f64(SPAM_BURST);
            self.spam
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < full_after);
            if self.spam.len() >= CACHE_PER_WRITER {
                self.spam.clear();
            }
        }
        let (tokens, at) = self.spam.entry(obj).or_insert((SPAM_BURST, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(SPAM_BURST);
        *at = now;
        if *tokens < 1.0 {
            return Decision::Spam;
        }
        *tokens -= 1.0;
        match self.seen.get(key) {
            Some(s) if now.saturating_duration_since(s.last_seen) < REPEAT_WINDOW => {
                Decision::Repeat {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    count: s.count.saturating_add(1),
                    first: s.first,
                }
            }
            _ => Decision::Create,
        }
    }

    fn written(&mut self, key: Key, seen: Seen) {
        if self.seen.len() >= CACHE_PER_WRITER && !self.seen.contains_key(&key) {
            let now = seen.last_seen;
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.last_seen) < REPEAT_WINDOW);
            if self.seen.len() >= CACHE_PER_WRITER {
                // Still full of recent events: drop the oldest tenth.
                let mut ages: Vec<Instant> = self.seen.values().map(|s| s.last_seen).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 10];
                self.seen.retain(|_, s| s.last_seen > cut);
            }
        }
        self.seen.insert(key, seen);
    }
}

struct Writer {
    client: ApiClient,
    source: Arc<Source>,
    correlator: Correlator,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        while let Some(r) = rx.recv().await {
            let key = Key::of(&r);
            let now = Instant::now();
            match self.correlator.decide(&key, now) {
                Decision::Spam => {
                    debug!(reason = %r.reason, object = ?r.object.name, "event dropped by the spam filter");
                }
                Decision::Create => {
                    if let Some(seen) = self.create(&r, 1, r.at).await {
                        self.correlator.written(key, seen);
                    }
                }
                Decision::Repeat {
                    namespace,
                    name,
                    count,
                    first,
                } => {
                    let patch = Patch::Merge(serde_json::json!({
                        "count": count,
                        "lastTimestamp": Time(r.at),
                        "message": r.message,
                    }));
                    let outcome = self
                        .retry(|| self.client.patch::<Event>(&namespace, &name, &patch))
                        .await;
                    let seen = match outcome {
                        Ok(_) => Some(Seen {
                            namespace,
                            name,
                            count,
                            first,
                            last_seen: now,
                        }),
                        // Expired (events live `--event-ttl`) or deleted: a new one, counting on.
                        Err(e) if e.is_not_found() => self.create(&r, count, first).await,
                        Err(e) => {
                            warn!(error = %e, reason = %r.reason, "cannot update event");
                            None
                        }
                    };
                    if let Some(seen) = seen {
                        self.correlator.written(key, seen);
                    }
                }
            }
        }
    }

    async fn create(&self, r: &Record, count: i32, first: Timestamp) -> Option<Seen> {
        let namespace = r
            .object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let nanos = r.at.as_nanosecond();
        let name = format!(
            "{}.{:x}",
            r.object.name.as_deref().unwrap_or("unknown"),
            nanos
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: r.object.clone(),
            reason: Some(r.reason.clone()),
            message: Some(r.message.clone()),
            type_: Some(r.type_.to_owned()),
            source: Some(EventSource {
                component: Some(self.source.component.clone()),
                host: (!self.source.host.is_empty()).then(|| self.source.host.clone()),
            }),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(r.at)),
            count: Some(count),
            reporting_component: Some(self.source.component.clone()),
            reporting_instance: (!self.source.host.is_empty()).then(|| self.source.host.clone()),
            ..Default::default()
        };
        match self.retry(|| self.client.create(&namespace, &event)).await {
            Ok(_) => Some(Seen {
                namespace,
                name,
                count,
                first,
                last_seen: Instant::now(),
            }),
            Err(e) => {
                warn!(error = %e, reason = %r.reason, "cannot write event");
                None
            }
        }
    }

    /// Retries transient failures (unavailable, timeouts, throttling) a few times.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Err(e) if attempt < ATTEMPTS && matches!(e.code, 429 | 500 | 503 | 504) => {
                    tokio::time::sleep(Duration::from_millis(500) * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bosun_api_client::k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn record(name: &str, reason: &str, message: &str) -> Record {
        Record {
            object: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            type_: "Normal",
            reason: reason.into(),
            message: message.into(),
            at: Timestamp::now(),
        }
    }

    fn seen(name: &str, count: i32, at: Instant) -> Seen {
        Seen {
            namespace: "default".into(),
            name: name.into(),
            count,
            first: Timestamp::UNIX_EPOCH,
            last_seen: at,
        }
    }

    #[test]
    fn object_refs_carry_what_describe_selects_by() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = object_ref(&pod);
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.namespace.as_deref(), Some("prod"));
        assert_eq!(r.name.as_deref(), Some("web-1"));
        assert_eq!(r.uid.as_deref(), Some("u1"));
        assert_eq!(r.resource_version.as_deref(), Some("42"));
    }

    #[test]
    fn the_same_event_within_ten_minutes_repeats_into_one() {
        let mut c = Correlator::default();
        let t0 = Instant::now();
        let a = Key::of(&record("p", "Scheduled", "assigned default/p to n1"));
        assert_eq!(c.decide(&a, t0), Decision::Create);
        c.written(a.clone(), seen("p.1", 1, t0));
        let t1 = t0 + Duration::from_secs(60);
        let d = c.decide(&a, t1);
        assert!(
            matches!(&d, Decision::Repeat { name, count: 2, .. } if name == "p.1"),
            "{d:?}"
        );
        c.written(a.clone(), seen("p.1", 2, t1));
        // Another message is another Event.
        let b = Key::of(&record("p", "Scheduled", "assigned default/p to n2"));
        assert_eq!(c.decide(&b, t1), Decision::Create);
        // After ten quiet minutes, a new Event.
        assert_eq!(
            c.decide(&a, t1 + REPEAT_WINDOW + Duration::from_secs(1)),
            Decision::Create
        );
    }

    #[test]
    fn an_object_gets_25_events_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        let t0 = Instant::now();
        let mut kept = 0;
        for i in 0..40 {
            let k = Key::of(&record("noisy", "Reason", &format!("message {i}")));
            if c.decide(&k, t0) != Decision::Spam {
                kept += 1;
            }
        }
        assert_eq!(kept, 25);
        let k = Key::of(&record("noisy", "Reason", "later"));
        assert_eq!(c.decide(&k, t0 + Duration::from_secs(100)), Decision::Spam);
        assert_eq!(c.decide(&k, t0 + SPAM_REFILL), Decision::Create);
        // Other objects are not affected.
        let other = Key::of(&record("quiet", "Reason", "hello"));
        assert_eq!(c.decide(&other, t0), Decision::Create);
    }

    #[test]
    fn caches_stay_bounded() {
        let mut c = Correlator::default();
        let t0 = Instant::now();
        for i in 0..(CACHE_PER_WRITER * 2) {
            let k = Key::of(&record(&format!("p{i}"), "R", "m"));
            assert_eq!(c.decide(&k, t0), Decision::Create);
            c.written(k, seen(&format!("p{i}.1"), 1, t0));
        }
        assert!(c.seen.len() <= CACHE_PER_WRITER, "{}", c.seen.len());
        assert!(c.spam.len() <= CACHE_PER_WRITER, "{}", c.spam.len());
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let s = truncate("é".repeat(MAX_MESSAGE));
        assert!(s.len() <= MAX_MESSAGE && s.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short".into()), "short");
    }
}
