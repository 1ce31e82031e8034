//! Connection management, endpoint failover and the retry policy.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bosun_proto::etcdserverpb::cluster_client::ClusterClient;
use bosun_proto::etcdserverpb::kv_client::KvClient;
use bosun_proto::etcdserverpb::lease_client::LeaseClient;
use bosun_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use bosun_proto::etcdserverpb::watch_client::WatchClient;
use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::backoff::Backoff;
use crate::error::{Error, Outcome};
use crate::transport::Channel;

/// How the client connects, times out and retries.
///
/// Build with [`ConnectOptions::default`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound on establishing one TCP + HTTP/2 connection (default 5 s).
    pub connect_timeout: Duration,
    /// Bound on each attempt of a unary call, and on establishing a stream (default 30 s).
    /// `None` waits forever (not recommended).
    pub request_timeout: Option<Duration>,
    /// Interval of HTTP/2 keep-alive pings, which detect dead connections under long-lived
    /// watches (default 30 s). `None` disables pings.
    pub keep_alive_interval: Option<Duration>,
    /// How long to wait for a ping's answer before declaring the connection dead (default 10 s).
    pub keep_alive_timeout: Duration,
    /// Attempts per call, first one included, for the retries described on [`Client`]
    /// (default 3; at least 1).
    pub max_attempts: u32,
    /// First delay between attempts (default 50 ms); doubles per attempt.
    pub backoff_initial: Duration,
    /// Largest delay between attempts (default 2 s).
    pub backoff_max: Duration,
    /// Largest response message accepted (default 256 MiB).
    pub max_decoding_message_size: usize,
    /// Largest request message sent (default 64 MiB; the server enforces its own, smaller
    /// limit and answers [`Error::RequestTooLarge`]).
    pub max_encoding_message_size: usize,
    /// When true, [`Client::connect`] dials every endpoint and fails unless at least one
    /// answers. When false (default) connections are made lazily on first use, so a client
    /// can be created before the store is up.
    pub connect_eagerly: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
            keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Duration::from_secs(10),
            max_attempts: 3,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_decoding_message_size: 256 << 20,
            max_encoding_message_size: 64 << 20,
            connect_eagerly: false,
        }
    }
}

impl ConnectOptions {
    /// The defaults; same as [`ConnectOptions::default`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`ConnectOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`ConnectOptions::request_timeout`].
    pub fn with_request_timeout(mut self, d: Option<Duration>) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`ConnectOptions::keep_alive_interval`] and [`ConnectOptions::keep_alive_timeout`].
    pub fn with_keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.keep_alive_interval = interval;
        self.keep_alive_timeout = timeout;
        self
    }
    /// Sets [`ConnectOptions::max_attempts`].
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the retry back-off bounds.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }
    /// Sets the message size limits (decoding = responses, encoding = requests).
    pub fn with_message_limits(mut self, decoding: usize, encoding: usize) -> Self {
        self.max_decoding_message_size = decoding;
        self.max_encoding_message_size = encoding;
        self
    }
    /// Sets [`ConnectOptions::connect_eagerly`].
    pub fn with_connect_eagerly(mut self, eager: bool) -> Self {
        self.connect_eagerly = eager;
        self
    }
}

/// A handle to a Bosun (or etcd v3) cluster. Cheap to clone: all clones share the same
/// connections.
///
/// # Endpoints and failover
///
/// The client keeps **one channel per endpoint** (each reconnects by itself) and sends every
/// request to a *current* endpoint; when a call fails in a way that points at the member or
/// the connection (see [`Error::is_transient`]) the current endpoint moves on to the next
/// one, round-robin. We chose this over a balanced channel (tonic's `Channel::balance_list`)
/// because:
/// - a balanced channel keeps a dead endpoint in rotation and hands its connection errors to
///   a share of the calls, without saying which endpoint failed;
/// - a stream that breaks (watch, lease keep-alive) must be re-created on a *different*
///   member, deliberately, and a sticky endpoint keeps a client's reads, watches and
///   keep-alives on one member, as etcd's own clients do;
/// - the client must know whether a failure happened before anything was sent
///   (connection refused) to classify it as [`Outcome::NotApplied`].
///
/// # Retries
///
/// Every call makes at most [`ConnectOptions::max_attempts`] attempts, sleeping a bounded
/// exponential back-off (`backoff_initial` .. `backoff_max`) between them:
/// - **idempotent requests** (range/get, read-only txns, status, member list, lease
///   time-to-live and list, hash, alarm list, establishing watch/keep-alive/snapshot streams)
///   are retried on any transient failure ([`Error::is_transient`]), on the next endpoint;
/// - **writes** (put, delete, txns with writes, compact, lease grant/revoke, member changes,
///   defragment) are retried *only* when the failure proves they were not applied
///   ([`Outcome::NotApplied`]: connection refused before sending, no leader). Any other
///   failure is returned as is; when its [`Error::outcome`] is [`Outcome::Unknown`] the write
///   may or may not have happened and the caller must decide (typically re-read, or make the
///   write conditional with a [`crate::Txn`]).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints())
            .field("current", &self.current_endpoint())
            .finish()
    }
}

pub(crate) struct Slot {
    url: String,
    channel: Channel,
}

pub(crate) struct Inner {
    slots: Vec<Arc<Slot>>,
    current: AtomicUsize,
    pub(crate) opts: ConnectOptions,
}

/// Whether a call may be re-sent after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Re-sent on any transient failure.
    Idempotent,
    /// Re-sent only when the failure proves it was not applied.
    NotIdempotent,
}

/// Normalises an endpoint: `host:port` gets `http://`; a trailing `/` is dropped.
pub(crate) fn normalize_endpoint(raw: &str) -> Result<String, Error> {
    let s = raw.trim();
    if s.trim_end_matches('/').is_empty() {
        return Err(Error::InvalidArgument("empty endpoint".into()));
    }
    let url = if let Some((scheme, rest)) = s.split_once("://") {
        let rest = rest.trim_end_matches('/');
        match scheme {
            "http" => {}
            "https" => {
                return Err(Error::InvalidArgument(format!(
                    "endpoint {raw}: https is not supported (this client is built without TLS)"
                )));
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "endpoint {raw}: unsupported scheme {other}"
                )));
            }
        }
        if rest.is_empty() {
            return Err(Error::InvalidArgument(format!("endpoint {raw}: no host")));
        }
        format!("{scheme}://{rest}")
    } else {
        format!("http://{}", s.trim_end_matches('/'))
    };
    Ok(url)
}

impl Client {
    /// Creates a client for the given endpoints (`http://host:port`, or `host:port`).
    ///
    /// Duplicate endpoints are dropped. Unless [`ConnectOptions::connect_eagerly`] is set no
    /// connection is made here; the first request dials. Must be called inside a Tokio runtime.
    pub async fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        opts: ConnectOptions,
    ) -> Result<Client, Error> {
        let mut urls: Vec<String> = Vec::new();
        for e in endpoints {
            let url = normalize_endpoint(&e.into())?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        if urls.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        let mut slots = Vec::with_capacity(urls.len());
        let mut errors = Vec::new();
        let mut reachable: Option<usize> = None;
        for (idx, url) in urls.into_iter().enumerate() {
            let channel = Channel::new(&url, &opts)?;
            if opts.connect_eagerly {
                match channel.connect().await {
                    Ok(()) => {
                        reachable.get_or_insert(idx);
                    }
                    Err(e) => {
                        tracing::debug!(endpoint = %url, error = %e, "eager connect failed");
                        errors.push(e.to_string());
                    }
                }
            }
            slots.push(Arc::new(Slot { url, channel }));
        }
        if opts.connect_eagerly && reachable.is_none() {
            return Err(Error::Unavailable {
                message: errors.join("; "),
                connect_failed: true,
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                slots,
                current: AtomicUsize::new(reachable.unwrap_or(0)),
                opts,
            }),
        })
    }

    /// The normalised endpoints, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.slots.iter().map(|s| s.url.clone()).collect()
    }

    /// The endpoint requests currently go to.
    pub fn current_endpoint(&self) -> String {
        let (idx, _) = self.inner.pick();
        self.inner.slots[idx].url.clone()
    }

    /// A client that talks only to `endpoint` (one of [`Client::endpoints`], in either form),
    /// sharing this client's connection: for per-member calls such as
    /// [`Client::status`] or [`Client::defragment`]. `None` if the endpoint is not known.
    pub fn pinned(&self, endpoint: &str) -> Option<Client> {
        let url = normalize_endpoint(endpoint).ok()?;
        let slot = self.inner.slots.iter().find(|s| s.url == url)?.clone();
        Some(Client {
            inner: Arc::new(Inner {
                slots: vec![slot],
                current: AtomicUsize::new(0),
                opts: self.inner.opts.clone(),
            }),
        })
    }

    /// Runs one call with the retry policy described on [`Client`].
    ///
    /// `call` gets a channel to the current endpoint and must build a fresh request each time.
    pub(crate) async fn call<T, F, Fut>(&self, idem: Idempotency, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let opts = &self.inner.opts;
        let max_attempts = opts.max_attempts.max(1);
        let mut backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (idx, channel) = self.inner.pick();
            let fut = call(channel);
            let result = match opts.request_timeout {
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r.map_err(Error::from),
                    Err(_) => Err(Error::Timeout {
                        message: format!("no response within {limit:?}"),
                    }),
                },
                None => fut.await.map_err(Error::from),
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(err) => err,
            };
            if err.is_transient() {
                self.inner.failover(idx);
            }
            let retry = match idem {
                Idempotency::Idempotent => err.is_transient(),
                Idempotency::NotIdempotent => err.outcome() == Outcome::NotApplied,
            };
            if !retry || attempt >= max_attempts {
                return Err(err);
            }
            let delay = backoff.next_delay();
            tracing::debug!(attempt, error = %err, ?delay, "retrying request");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Inner {
    /// The current endpoint's index and channel.
    pub(crate) fn pick(&self) -> (usize, Channel) {
        let n = self.slots.len();
        let idx = self.current.load(Ordering::Relaxed) % n;
        (idx, self.slots[idx].channel.clone())
    }

    /// Moves the current endpoint past `failed`, unless another caller already did.
    pub(crate) fn failover(&self, failed: usize) {
        let n = self.slots.len();
        if n > 1 {
            let _ = self.current.compare_exchange(
                failed,
                (failed + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn kv(&self, ch: Channel) -> KvClient<Channel> {
        KvClient::new(ch)
            .max_decoding_message_size(self.opts.max_decoding_message_size)
            .max_encoding_message_size(self.opts.max_encoding_message_size)
    }

    pub(crate) fn watch(&self, ch: Channel) -> WatchClient<Channel> {
        WatchClient::new(ch)
            .max_decoding_message_size(self.opts.max_decoding_message_size)
            .max_encoding_message_size(self.opts.max_encoding_message_size)
    }

    pub(crate) fn lease(&self, ch: Channel) -> LeaseClient<Channel> {
        LeaseClient::new(ch)
            .max_decoding_message_size(self.opts.max_decoding_message_size)
            .max_encoding_message_size(self.opts.max_encoding_message_size)
    }

    pub(crate) fn cluster(&self, ch: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(ch)
            .max_decoding_message_size(self.opts.max_decoding_message_size)
            .max_encoding_message_size(self.opts.max_encoding_message_size)
    }

    pub(crate) fn maintenance(&self, ch: Channel) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(ch)
            .max_decoding_message_size(self.opts.max_decoding_message_size)
            .max_encoding_message_size(self.opts.max_encoding_message_size)
    }

    /// How long to wait for a stream to be established (headers and first answer).
    pub(crate) fn stream_setup_timeout(&self) -> Duration {
        self.opts.request_timeout.unwrap_or(Duration::from_secs(30))
    }
}

/// Wraps a streaming request with etcd's `hasleader` metadata, so that a member which loses
/// its leader ends the stream (and the client moves to another member) instead of silently
/// serving nothing.
pub(crate) fn require_leader<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("hasleader", MetadataValue::from_static("true"));
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379").ok().as_deref(),
            Some("http://127.0.0.1:2379")
        );
        assert_eq!(
            normalize_endpoint(" http://a:1/ ").ok().as_deref(),
            Some("http://a:1")
        );
        assert!(normalize_endpoint("").is_err());
        assert!(normalize_endpoint("https://a:1").is_err());
        assert!(normalize_endpoint("unix://x").is_err());
        assert!(normalize_endpoint("http://").is_err());
    }

    #[tokio::test]
    async fn connect_dedups_and_pins() -> Result<(), Error> {
        let c = Client::connect(
            ["127.0.0.1:1", "http://127.0.0.1:1", "127.0.0.1:2"],
            ConnectOptions::default(),
        )
        .await?;
        assert_eq!(
            c.endpoints(),
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        let p = c
            .pinned("127.0.0.1:2")
            .ok_or(Error::InvalidArgument("pin".into()))?;
        assert_eq!(p.endpoints(), vec!["http://127.0.0.1:2"]);
        assert!(c.pinned("127.0.0.1:3").is_none());
        c.inner.failover(0);
        assert_eq!(c.current_endpoint(), "http://127.0.0.1:2");
        // A stale failure report does not move the current endpoint again.
        c.inner.failover(0);
        assert_eq!(c.current_endpoint(), "http://127.0.0.1:2");
        let none: [&str; 0] = [];
        assert!(
            Client::connect(none, ConnectOptions::default())
                .await
                .is_err()
        );
        Ok(())
    }
}
