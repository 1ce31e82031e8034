//! `bosun apiserver`: the Kubernetes REST API that kubectl uses, and a gRPC API for Bosun's
//! components, on one listener, over the store.
//!
//! The apiserver is the only component that talks to the store. Request flow:
//! [`rest`] or [`grpc`] parse a request → [`registry`] reads or compare-and-swaps the object's
//! JSON in the store, asking the object's kind ([`kinds`]) for what differs between kinds:
//! decoding into the `k8s-openapi` type, defaults, validation → watches are served from one
//! watch cache per resource ([`watch`]).

pub mod admission;
pub mod encoding;
pub mod error;
pub mod grpc;
pub mod kinds;
pub mod limits;
pub mod merge;
pub mod registry;
pub mod rest;
pub mod serve;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bosun_client::{Client, ConnectOptions, GetOptions};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::watch as signal;
use tracing::{info, warn};

use crate::limits::Limits;
use crate::registry::{EtcdStore, Registry};
use crate::watch::cache::{WatchCache, stopped};

/// Namespaces created at start.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// `bosun apiserver` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiserverConfig {
    /// Store endpoints (Bosun store members or etcd), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_servers: Vec<String>,
    /// Address to serve the REST and gRPC APIs on (plain HTTP/1.1 and HTTP/2).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Key prefix of every object in the store.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// Seconds between store compactions (each compacts to the revision of the previous
    /// round); 0 disables them.
    #[arg(long, default_value_t = 300)]
    pub etcd_compaction_interval: u64,
    /// Seconds an Event is kept.
    #[arg(long, default_value_t = 3600)]
    pub event_ttl: u64,
    /// Recent changes kept per resource for watches to resume from.
    #[arg(long, default_value_t = 10_000)]
    pub watch_cache_size: usize,
    /// Changes queued per watcher before a watcher that does not keep up is dropped.
    #[arg(long, default_value_t = 1_000)]
    pub watch_buffer: usize,
    /// Seconds between bookmarks on watches that allow them.
    #[arg(long, default_value_t = 30)]
    pub watch_bookmark_interval: u64,
    /// Largest request body accepted, in bytes (REST body or gRPC message); also the bytes
    /// the `copy` operations of one JSON patch may add.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// The store's --max-request-bytes: objects larger than this less 4 KiB (for the key and
    /// the txn around the object) are refused with 413 before the store is asked.
    #[arg(long, default_value_t = limits::DEFAULT_STORE_REQUEST_BYTES)]
    pub etcd_max_request_bytes: usize,
    /// Seconds a client has to send a request's headers once it has begun them, and a new
    /// connection (HTTP/1.1 or HTTP/2) to send its first request; slower clients are dropped.
    #[arg(long, default_value_t = serve::DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout: u64,
    /// Seconds a connection may stay open with no request in progress before it is closed
    /// (HTTP/2 with GOAWAY). Open watches and gRPC streams are requests in progress.
    #[arg(long, default_value_t = serve::DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout: u64,
    /// Seconds between HTTP/2 pings to a connection's peer; 0 disables them.
    #[arg(long, default_value_t = serve::DEFAULT_HTTP2_KEEPALIVE_INTERVAL_SECS)]
    pub http2_keepalive_interval: u64,
    /// Seconds to wait for the answer to an HTTP/2 ping before dropping the connection.
    #[arg(long, default_value_t = serve::DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECS)]
    pub http2_keepalive_timeout: u64,
    /// Most concurrent streams (requests, watches) on one HTTP/2 connection.
    #[arg(long, default_value_t = serve::DEFAULT_HTTP2_MAX_STREAMS)]
    pub http2_max_streams_per_connection: u32,
    /// Most client connections open at once; connections above it are closed as soon as
    /// they are accepted.
    #[arg(long, default_value_t = serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Indicates the tolerationSeconds of the toleration for notReady:NoExecute that is
    /// added by default to every pod that does not already have such a toleration.
    #[arg(long, default_value_t = admission::DEFAULT_TOLERATION_SECONDS)]
    pub default_not_ready_toleration_seconds: i64,
    /// Indicates the tolerationSeconds of the toleration for unreachable:NoExecute that is
    /// added by default to every pod that does not already have such a toleration.
    #[arg(long, default_value_t = admission::DEFAULT_TOLERATION_SECONDS)]
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for ApiserverConfig {
    fn default() -> Self {
        ApiserverConfig {
            etcd_servers: vec!["http://127.0.0.1:2379".into()],
            listen: "127.0.0.1:8080".into(),
            etcd_prefix: "/registry".into(),
            etcd_compaction_interval: 300,
            event_ttl: 3600,
            watch_cache_size: 10_000,
            watch_buffer: 1_000,
            watch_bookmark_interval: 30,
            max_request_bytes: limits::DEFAULT_MAX_REQUEST_BYTES,
            etcd_max_request_bytes: limits::DEFAULT_STORE_REQUEST_BYTES,
            header_read_timeout: serve::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout: serve::DEFAULT_IDLE_TIMEOUT_SECS,
            http2_keepalive_interval: serve::DEFAULT_HTTP2_KEEPALIVE_INTERVAL_SECS,
            http2_keepalive_timeout: serve::DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECS,
            http2_max_streams_per_connection: serve::DEFAULT_HTTP2_MAX_STREAMS,
            max_connections: serve::DEFAULT_MAX_CONNECTIONS,
            default_not_ready_toleration_seconds: admission::DEFAULT_TOLERATION_SECONDS,
            default_unreachable_toleration_seconds: admission::DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Request and watch counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<HashMap<String, u64>>,
    errors: Mutex<HashMap<u16, u64>>,
    watches: Arc<AtomicI64>,
    watches_total: AtomicU64,
}

type Mutex<T> = parking_lot::Mutex<T>;

/// Decrements the open-watch gauge when dropped.
#[derive(Debug)]
pub struct WatchGuard(Arc<AtomicI64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a request by verb (HTTP method).
    pub fn request(&self, method: &str) {
        let mut requests = self.requests.lock();
        match requests.get_mut(method) {
            Some(n) => *n += 1,
            None => {
                requests.insert(method.to_string(), 1);
            }
        }
    }

    /// Counts a failed request by code.
    pub fn error(&self, code: u16) {
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// Counts an open watch until the guard drops.
    pub fn watch_started(&self) -> WatchGuard {
        self.watches.fetch_add(1, Ordering::Relaxed);
        self.watches_total.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self.watches.clone())
    }

    /// Prometheus text format.
    pub fn render(&self, shared: &Shared) -> String {
        let mut out = String::new();
        out.push_str("# HELP bosun_apiserver_requests_total REST requests by method.\n# TYPE bosun_apiserver_requests_total counter\n");
        let mut reqs: Vec<_> = self.requests.lock().clone().into_iter().collect();
        reqs.sort();
        for (m, n) in reqs {
            out.push_str(&format!(
                "bosun_apiserver_requests_total{{method=\"{m}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP bosun_apiserver_request_errors_total Failed requests by HTTP code.\n# TYPE bosun_apiserver_request_errors_total counter\n");
        let mut errs: Vec<_> = self.errors.lock().clone().into_iter().collect();
        errs.sort();
        for (c, n) in errs {
            out.push_str(&format!(
                "bosun_apiserver_request_errors_total{{code=\"{c}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP bosun_apiserver_watches Open watches (REST and gRPC).\n# TYPE bosun_apiserver_watches gauge\nbosun_apiserver_watches {}\n",
            self.watches.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP bosun_apiserver_watches_total Watches started.\n# TYPE bosun_apiserver_watches_total counter\nbosun_apiserver_watches_total {}\n",
            self.watches_total.load(Ordering::Relaxed)
        ));
        let c = &shared.connections;
        out.push_str(&format!(
            "# HELP bosun_apiserver_connections Client connections open.\n# TYPE bosun_apiserver_connections gauge\nbosun_apiserver_connections {}\n",
            c.open()
        ));
        out.push_str(&format!(
            "# HELP bosun_apiserver_connections_refused_total Connections closed on accept because --max-connections were open.\n# TYPE bosun_apiserver_connections_refused_total counter\nbosun_apiserver_connections_refused_total {}\n",
            c.refused()
        ));
        out.push_str(&format!(
            "# HELP bosun_apiserver_connections_idle_closed_total Connections closed for being idle or sending no request in time.\n# TYPE bosun_apiserver_connections_idle_closed_total counter\nbosun_apiserver_connections_idle_closed_total {}\n",
            c.idle_closed()
        ));
        out.push_str("# HELP bosun_apiserver_watch_cache_watchers Watchers per resource cache.\n# TYPE bosun_apiserver_watch_cache_watchers gauge\n");
        let caches = shared.registry.caches();
        for (name, c) in &caches {
            out.push_str(&format!(
                "bosun_apiserver_watch_cache_watchers{{resource=\"{name}\"}} {}\n",
                c.watchers()
            ));
        }
        out.push_str("# HELP bosun_apiserver_watchers_dropped_total Watchers dropped for not keeping up (they resume).\n# TYPE bosun_apiserver_watchers_dropped_total counter\n");
        for (name, c) in &caches {
            out.push_str(&format!(
                "bosun_apiserver_watchers_dropped_total{{resource=\"{name}\"}} {}\n",
                c.dropped()
            ));
        }
        out
    }
}

/// State shared by the REST and gRPC front ends.
pub struct Shared {
    /// The one code path to the store.
    pub registry: Registry,
    /// Counters.
    pub metrics: Metrics,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Connection counters of the listener.
    pub connections: Arc<serve::ConnectionMetrics>,
    /// HTTP client for the kubelets (pod logs).
    pub kubelet_client: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Creates the built-in namespaces, retrying while the store comes up (bounded).
async fn bootstrap(registry: &Registry, shutdown: &signal::Receiver<bool>) -> anyhow::Result<()> {
    let ns = kinds::namespaces();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for name in INITIAL_NAMESPACES {
        loop {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match registry.ensure(ns, obj).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline && !*shutdown.borrow() => {
                    warn!(error = %e, "store not ready; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(anyhow::anyhow!("create namespace {name}: {e}")),
            }
        }
    }
    Ok(())
}

/// Compacts the store's history every `interval`, to the revision seen one interval earlier
/// (so watches and continue tokens younger than that stay valid).
async fn compactor(kv: Client, interval: Duration, mut shutdown: signal::Receiver<bool>) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped(&mut shutdown) => return,
        }
        let head = match kv
            .get("compact_rev_key", GetOptions::new().with_count_only())
            .await
        {
            Ok(r) => r.header.map_or(0, |h| h.revision),
            Err(e) => {
                warn!(error = %e, "compaction: cannot read the store revision");
                continue;
            }
        };
        if let Some(rev) = previous {
            match kv.compact(rev, false).await {
                Ok(_) => info!(revision = rev, "compacted the store"),
                Err(bosun_client::Error::Compacted { .. }) => {}
                Err(e) => warn!(error = %e, revision = rev, "compaction failed"),
            }
        }
        previous = Some(head);
    }
}

/// Runs the apiserver until `shutdown` becomes true.
pub async fn run(cfg: ApiserverConfig, shutdown: signal::Receiver<bool>) -> anyhow::Result<()> {
    let limits = Limits {
        max_request_bytes: cfg.max_request_bytes,
        store_request_bytes: cfg.etcd_max_request_bytes,
    };
    let kv = Client::connect(
        cfg.etcd_servers.clone(),
        ConnectOptions::default().with_message_limits(
            limits::STORE_RESPONSE_BYTES,
            limits.store_client_request_bytes(),
        ),
    )
    .await
    .context("connect to the store")?;
    let prefix = cfg.etcd_prefix.trim_end_matches('/').to_string();
    let mut caches = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for res in kinds::all().map(|k| k.resource()) {
        let mut cache = WatchCache::new(res, cfg.watch_cache_size, cfg.watch_buffer);
        if res.plural == "pods" || res.plural == "namespaces" {
            // The bind path starts from the cached pod (`Registry::bind`), a create from the
            // cached namespace (`Registry::namespace_guess`).
            cache = cache.keeping_objects();
        }
        caches.insert(res.plural, cache.clone());
        tasks.spawn(watch::cache::run(
            cache,
            kv.clone(),
            format!("{prefix}/{}/", res.plural),
            shutdown.clone(),
        ));
    }
    let registry = Registry::new(
        EtcdStore::new(kv.clone()),
        prefix,
        caches,
        Duration::from_secs(cfg.event_ttl),
        limits,
    )
    .with_admission(admission::Admission {
        not_ready_toleration_seconds: cfg.default_not_ready_toleration_seconds,
        unreachable_toleration_seconds: cfg.default_unreachable_toleration_seconds,
    });
    bootstrap(&registry, &shutdown).await?;
    if cfg.etcd_compaction_interval > 0 {
        tasks.spawn(compactor(
            kv.clone(),
            Duration::from_secs(cfg.etcd_compaction_interval),
            shutdown.clone(),
        ));
    }
    let shared = Arc::new(Shared {
        registry,
        metrics: Metrics::default(),
        connections: Arc::new(serve::ConnectionMetrics::default()),
        bookmark_interval: Duration::from_secs(cfg.watch_bookmark_interval.max(1)),
        kubelet_client: HttpClient::builder(TokioExecutor::new()).build_http(),
    });
    let grpc = tonic::service::Routes::new(
        bosun_proto::apipb::api_server::ApiServer::new(grpc::ApiService::new(shared.clone()))
            .max_decoding_message_size(limits.max_request_bytes),
    )
    .into_axum_router();
    let connections = shared.connections.clone();
    let app = rest::router(grpc, shared).layer(axum::extract::DefaultBodyLimit::max(
        limits.max_request_bytes,
    ));
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    info!(listen = %cfg.listen, store = ?cfg.etcd_servers, "serving the Kubernetes API and the gRPC API");
    let secs = Duration::from_secs;
    let opts = serve::ServeOptions {
        header_read_timeout: secs(cfg.header_read_timeout.max(1)),
        idle_timeout: secs(cfg.idle_timeout.max(1)),
        keepalive_interval: (cfg.http2_keepalive_interval > 0)
            .then(|| secs(cfg.http2_keepalive_interval)),
        keepalive_timeout: secs(cfg.http2_keepalive_timeout.max(1)),
        max_streams: cfg.http2_max_streams_per_connection.max(1),
        max_connections: cfg.max_connections.max(1),
    };
    serve::serve(listener, app, opts, connections, shutdown.clone()).await;
    tasks.shutdown().await;
    Ok(())
}
