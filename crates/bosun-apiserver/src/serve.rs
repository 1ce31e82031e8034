//! The listener: HTTP/1.1 and HTTP/2 (cleartext) connections, with bounds for slow, idle and
//! too many clients.
//!
//! - A client must send a request's headers within the header-read timeout: hyper enforces it
//!   for each HTTP/1.1 request from its first byte; here it bounds the time from accepting a
//!   connection to its first request, which covers the protocol detection and HTTP/2.
//! - A connection with no request in progress for the idle timeout is closed (HTTP/2 with a
//!   GOAWAY), as Go's `IdleTimeout` closes kube-apiserver's: an HTTP/1.1 keep-alive
//!   connection waiting for its next request, an HTTP/2 one with no open stream. A request is
//!   in progress until its response body ends, so open watches and gRPC streams keep their
//!   connection.
//! - HTTP/2 pings find dead peers; each HTTP/2 connection carries a bounded number of streams.
//! - At most `max_connections` connections are served at once: one accepted above the bound
//!   is closed at once, so the ones being served keep working.
//!
//! A connection told to close that does not finish within [`CLOSE_GRACE`] once it has no
//! request in progress is dropped. When the server stops, connections close gracefully and
//! get [`DRAIN_TIMEOUT`] to finish what is in progress.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Kubernetes' `ReadHeaderTimeout` (just shy of its 34 s request timeout bound).
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 32;
/// Kubernetes' `IdleTimeout` (matches Go's `http.DefaultTransport` keep-alive timeout).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 90;
/// Interval of HTTP/2 pings (as the store client's).
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL_SECS: u64 = 30;
/// Wait for a ping's answer.
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECS: u64 = 10;
/// Kubernetes' default `MaxConcurrentStreams` per HTTP/2 connection.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;
/// Connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Time a connection told to close gets to finish closing once nothing is in progress.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Time connections get to finish their requests when the server stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time to receive a request's headers (and, on a new connection, its first request).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with nothing in progress.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 pings; `None` disables them.
    pub keepalive_interval: Option<Duration>,
    /// Wait for a ping's answer.
    pub keepalive_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub max_streams: u32,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            keepalive_interval: Some(Duration::from_secs(DEFAULT_HTTP2_KEEPALIVE_INTERVAL_SECS)),
            keepalive_timeout: Duration::from_secs(DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECS),
            max_streams: DEFAULT_HTTP2_MAX_STREAMS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Connection counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: std::sync::atomic::AtomicI64,
    refused: std::sync::atomic::AtomicU64,
    idle_closed: std::sync::atomic::AtomicU64,
}

impl ConnectionMetrics {
    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections closed on accept because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections closed for being idle or for not sending a first request in time.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `app` on `listener` until `shutdown` becomes true, then closes the connections
/// (waiting up to [`DRAIN_TIMEOUT`] for what is in progress).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    metrics: Arc<ConnectionMetrics>,
    shutdown: watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .max_concurrent_streams(opts.max_streams);
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        metrics.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        debug!(%peer, limit = opts.max_connections, "connection closed: too many connections");
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(connection(
                        tcp,
                        app.clone(),
                        builder.clone(),
                        opts,
                        metrics.clone(),
                        shutdown.clone(),
                        permit,
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = conns.len(),
            "connections still busy after the drain timeout; closing them"
        );
        conns.shutdown().await;
    }
}

/// What is in progress on one connection.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    in_progress: usize,
    started: u64,
    idle_since: Instant,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                started: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        })
    }

    fn start(self: &Arc<Self>) -> InProgress {
        {
            let mut s = self.state.lock();
            s.in_progress += 1;
            s.started += 1;
        }
        self.changed.notify_one();
        InProgress(self.clone())
    }

    /// When the connection becomes closable if nothing starts meanwhile: its first request
    /// is late, or it has been idle too long. `None` while a request is in progress.
    fn deadline(&self, accepted: Instant, opts: &ServeOptions) -> Option<Instant> {
        let s = self.state.lock();
        match (s.in_progress, s.started) {
            (0, 0) => Some(accepted + opts.header_read_timeout),
            (0, _) => Some(s.idle_since + opts.idle_timeout),
            _ => None,
        }
    }

    /// Since when nothing has been in progress; `None` while a request is.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.state.lock();
        (s.in_progress == 0).then_some(s.idle_since)
    }
}

/// One request in progress; its end (the response body dropped) is recorded on drop.
#[derive(Debug)]
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        {
            let mut s = self.0.state.lock();
            s.in_progress = s.in_progress.saturating_sub(1);
            if s.in_progress == 0 {
                s.idle_since = Instant::now();
            }
        }
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in progress until it ends.
struct TrackedBody {
    inner: Body,
    _in_progress: InProgress,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The app, counting each request as in progress on the connection.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl tower_service::Service<Request<hyper::body::Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let in_progress = self.activity.start();
        let mut app = self.app.clone();
        Box::pin(async move {
            let resp = tower_service::Service::call(&mut app, req.map(Body::new)).await?;
            Ok(resp.map(|inner| TrackedBody {
                inner,
                _in_progress: in_progress,
            }))
        })
    }
}

/// Serves one connection until it ends, is idle too long, or the server stops.
async fn connection(
    tcp: TcpStream,
    app: Router,
    builder: Builder<TokioExecutor>,
    opts: ServeOptions,
    metrics: Arc<ConnectionMetrics>,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    metrics
        .open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let accepted = Instant::now();
    let activity = Activity::new();
    let service = TowerToHyperService::new(Tracked {
        app,
        activity: activity.clone(),
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    // Set once the connection has been told to close.
    let mut closing: Option<Instant> = None;
    loop {
        let deadline = match closing {
            Some(at) => activity.idle_since().map(|idle| at.max(idle) + CLOSE_GRACE),
            None => activity.deadline(accepted, &opts),
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = sleep_until(deadline) => {
                if closing.is_some() {
                    // Told to close, nothing in progress, and still open: drop it.
                    break;
                }
                if activity.deadline(accepted, &opts).is_some_and(|d| d <= Instant::now()) {
                    metrics.idle_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
            _ = activity.changed.notified() => {}
            _ = shutdown.wait_for(|s| *s), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
    metrics
        .open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
