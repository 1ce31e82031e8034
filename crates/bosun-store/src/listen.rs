//! Serving the client and peer ports: HTTP/2 (and, on the client port, HTTP/1.1 for
//! `/metrics` and `/health`) over [`CoalescedStream`]s, with a bound on everything a
//! connection can hold.
//!
//! - A connection that has not completed its handshake (the HTTP/2 preface and the first
//!   frame, or an HTTP/1.1 request head) within the handshake timeout is closed: a client that
//!   sends a byte every few seconds holds no connection for long.
//! - A connection without a request or stream in flight for the idle timeout is closed with a
//!   GOAWAY, which lets clients retry safely on a new connection. Streams (watches, lease
//!   keep-alives, Raft appends) count as in flight for as long as they are open, so the idle
//!   timeout never cuts them.
//! - HTTP/2 keepalive pings drop connections whose other end stopped answering.
//! - At most `max_connections` connections per listener; when a new one arrives at the bound,
//!   the connection idle the longest is closed to make room, so idle connections cannot starve
//!   clients that have work. When none is idle, new connections wait in the listen backlog.
//! - At most `max_concurrent_streams` streams per connection (HTTP/2 flow control makes the
//!   client wait for more).
//! - On shutdown every connection gets a GOAWAY; those still busy after [`DRAIN`] are closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::codegen::Service;

use crate::coalesce::{self, CoalescedStream};

/// How long connections may finish what they are doing once the member stops.
pub const DRAIN: Duration = Duration::from_secs(1);
/// How long a connection sent a GOAWAY may stay once nothing is in flight on it.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The client connection preface every HTTP/2 connection starts with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bounds and timers of the connections on one listener.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// What the listener serves, for logs: "client" or "peer".
    pub name: &'static str,
    pub handshake_timeout: Duration,
    /// Zero: connections are never closed for being idle.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// Zero: no keepalive pings.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Serve HTTP/2 only (the peer port); otherwise HTTP/1.1 too.
    pub http2_only: bool,
    /// Enforce gRPC deadlines (`grpc-timeout`) on the server side, as tonic's server does:
    /// Raft's peer calls rely on it.
    pub grpc_deadlines: bool,
}

/// What a connection's supervisor and its request tracking share.
#[derive(Debug)]
struct Conn {
    /// Requests in flight, streams included (a response body counts until it is dropped).
    active: AtomicUsize,
    /// When `active` last dropped to zero (or the connection was accepted).
    idle_since: Mutex<Instant>,
    /// The handshake is complete: HTTP/2 preface and first frame, or an HTTP/1.1 request.
    handshaken: AtomicBool,
    /// Wakes the supervisor: the handshake completed or the last request ended.
    changed: Notify,
    /// Asks the connection to close (to make room for a new one).
    evict: Notify,
}

impl Conn {
    fn new() -> Arc<Conn> {
        Arc::new(Conn {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            handshaken: AtomicBool::new(false),
            changed: Notify::new(),
            evict: Notify::new(),
        })
    }

    /// Counts a request in flight until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        if !self.handshaken.swap(true, Ordering::AcqRel) {
            self.changed.notify_one();
        }
        InFlight(self.clone())
    }

    /// Since when the connection has had nothing in flight; `None` while it has.
    fn idle(&self) -> Option<Instant> {
        let since = *self.idle_since.lock();
        (self.active.load(Ordering::Acquire) == 0).then_some(since)
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time is set before the count drops, so an idle connection's time is its own.
        let mut since = self.0.idle_since.lock();
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *since = Instant::now();
            drop(since);
            self.0.changed.notify_one();
        }
    }
}

/// The connection's stream, watching the first bytes for the end of the HTTP/2 handshake.
#[derive(Debug)]
struct Watched {
    inner: CoalescedStream,
    conn: Arc<Conn>,
    /// The first bytes read, up to the preface and the first frame's header.
    head: Vec<u8>,
    /// Bytes read so far, counted until the handshake is complete.
    read: usize,
}

impl Watched {
    /// Notes `bytes` just read; marks the connection handshaken once the preface and one whole
    /// frame (the client's SETTINGS) have arrived. HTTP/1.1 connections are marked by their
    /// first request instead.
    fn saw(&mut self, bytes: &[u8]) {
        const HEAD: usize = PREFACE.len() + 9;
        let take = bytes.len().min(HEAD - self.head.len());
        self.head.extend_from_slice(&bytes[..take]);
        self.read += bytes.len();
        if self.head.len() < HEAD || !self.head.starts_with(PREFACE) {
            return;
        }
        let len = usize::from(self.head[24]) << 16
            | usize::from(self.head[25]) << 8
            | usize::from(self.head[26]);
        if self.read >= HEAD + len {
            self.conn.handshaken.store(true, Ordering::Release);
            self.conn.changed.notify_one();
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let watching = !self.conn.handshaken.load(Ordering::Acquire);
        if watching && matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let filled = buf.filled()[before..].to_vec();
            self.saw(&filled);
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A handler of the busiest gRPC calls, called without the router: the router's layers
/// (its middleware, route matching, boxed futures) cost a few percent of a member's CPU per
/// request under load.
pub type DirectCall = Arc<
    dyn Fn(http::Request<axum::body::Body>) -> BoxFuture<'static, http::Response<axum::body::Body>>
        + Send
        + Sync,
>;

/// What a listener serves: `router`, and the gRPC methods named in `direct` (exact paths,
/// known methods only, so that the router still answers everything else) through `call`.
#[derive(Clone)]
pub struct Routes {
    pub router: axum::Router,
    pub direct: Option<(&'static [&'static str], DirectCall)>,
}

impl Routes {
    /// Everything through `router`.
    pub fn router(router: axum::Router) -> Self {
        Routes {
            router,
            direct: None,
        }
    }

    /// The direct handler of a gRPC request, if it has one.
    fn direct_for<B>(&self, req: &http::Request<B>) -> Option<&DirectCall> {
        let (paths, call) = self.direct.as_ref()?;
        (is_grpc(req.headers()) && paths.contains(&req.uri().path())).then_some(call)
    }
}

/// Whether a request is a gRPC call: its content type is `application/grpc...`.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The routes as one connection serves them: every request counted in flight until its
/// response body is done with, and gRPC deadlines enforced when asked.
#[derive(Clone)]
struct Tracked {
    routes: Routes,
    conn: Arc<Conn>,
    grpc_deadlines: bool,
}

impl<B> Service<http::Request<B>> for Tracked
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = self.conn.begin();
        let deadline = if self.grpc_deadlines {
            grpc_timeout(req.headers())
        } else {
            None
        };
        let call = match self.routes.direct_for(&req) {
            Some(direct) => Either::Left(direct(req.map(axum::body::Body::new)).map(Ok)),
            None => Either::Right(Service::call(&mut self.routes.router, req)),
        };
        Box::pin(async move {
            let res = match deadline {
                None => call.await,
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r,
                    Err(_) => Ok(tonic::Status::deadline_exceeded("Timeout expired").into_http()),
                },
            };
            let Ok(res) = res;
            // The guard lives as long as the body: a stream counts while it is open.
            Ok(res.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _in_flight = &guard;
                    frame
                }))
            }))
        })
    }
}

/// The deadline a gRPC request carries in its `grpc-timeout` header (gRPC over HTTP/2: at
/// most 8 digits and a unit).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The HTTP server settings of one listener.
fn builder(opts: &ConnOptions) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    if opts.http2_only {
        b = b.http2_only();
    } else {
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.handshake_timeout);
    }
    let keepalive = (!opts.keepalive_interval.is_zero()).then_some(opts.keepalive_interval);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .keep_alive_interval(keepalive)
        .keep_alive_timeout(opts.keepalive_timeout);
    b
}

/// Serves `routes` on `listener` until `shutdown` becomes true; then gives connections
/// [`DRAIN`] to finish and closes the rest.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    opts: ConnOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(&opts));
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let conns: Arc<Mutex<HashMap<u64, Arc<Conn>>>> = Arc::default();
    let next_id = AtomicU64::new(0);
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = coalesce::accept(&listener) => s,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let permit = tokio::select! {
            p = slot(&slots, &conns, opts.name) => p,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let conn = Conn::new();
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        conns.lock().insert(id, conn.clone());
        let io = Watched {
            inner: stream,
            conn: conn.clone(),
            head: Vec::new(),
            read: 0,
        };
        let svc = Tracked {
            routes: routes.clone(),
            conn: conn.clone(),
            grpc_deadlines: opts.grpc_deadlines,
        };
        let (builder, opts, conns, stopping) = (
            builder.clone(),
            opts.clone(),
            conns.clone(),
            stopping.clone(),
        );
        tasks.spawn(async move {
            run_conn(&builder, io, svc, &conn, &opts, stopping).await;
            conns.lock().remove(&id);
            drop(permit);
        });
    }
    let _ = stop.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!(
            listener = opts.name,
            connections = tasks.len(),
            "closing connections still busy"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// A connection slot: a free one, or one freed by closing the connection idle the longest.
async fn slot(
    slots: &Arc<Semaphore>,
    conns: &Mutex<HashMap<u64, Arc<Conn>>>,
    name: &'static str,
) -> OwnedSemaphorePermit {
    let mut logged = false;
    loop {
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return p;
        }
        let idlest = conns
            .lock()
            .values()
            .filter_map(|c| Some((c.idle()?, c.clone())))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, c)) => c.evict.notify_one(),
            None if !logged => {
                tracing::warn!(
                    listener = name,
                    "connection limit reached and every connection busy; new ones wait"
                );
                logged = true;
            }
            None => {}
        }
        // Wait for the evicted connection to go, or look again for one that became idle.
        if let Ok(Ok(p)) =
            tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned()).await
        {
            return p;
        }
    }
}

/// Serves one connection until it ends: closed abruptly if its handshake does not complete
/// in time, with a GOAWAY when it is idle too long, evicted, or the listener stops.
async fn run_conn(
    builder: &Builder<TokioExecutor>,
    io: Watched,
    svc: Tracked,
    conn: &Conn,
    opts: &ConnOptions,
    mut stopping: watch::Receiver<bool>,
) {
    let accepted = Instant::now();
    let c = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(c);
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let deadline = if let Some(at) = closing {
            // A client that does not answer the GOAWAY's ping, or lets the connection be once
            // its streams are done, is not waited for.
            match conn.idle() {
                Some(since) => at.max(since) + CLOSE_GRACE,
                None => now + Duration::from_secs(3600),
            }
        } else if !conn.handshaken.load(Ordering::Acquire) {
            accepted + opts.handshake_timeout
        } else if let (Some(since), false) = (conn.idle(), opts.idle_timeout.is_zero()) {
            since + opts.idle_timeout
        } else {
            // Woken by `changed` when the last request ends.
            now + Duration::from_secs(3600)
        };
        tokio::select! {
            _ = c.as_mut() => return,
            _ = conn.changed.notified() => continue,
            _ = conn.evict.notified() => {
                // At the bound, room is made at once: the connection has nothing in flight.
                tracing::debug!(listener = opts.name, "closing an idle connection to make room");
                return;
            }
            _ = stopping.wait_for(|s| *s), if closing.is_none() => {}
            _ = tokio::time::sleep_until(deadline) => {
                if closing.is_some() {
                    return;
                }
                if !conn.handshaken.load(Ordering::Acquire) {
                    tracing::debug!(listener = opts.name, "handshake timed out; closing");
                    return;
                }
                if conn.idle().is_none_or(|since| since + opts.idle_timeout > Instant::now()) {
                    continue;
                }
                tracing::debug!(listener = opts.name, "idle connection; closing");
            }
        }
        c.as_mut().graceful_shutdown();
        closing = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_calls_of_the_named_methods_skip_the_router() {
        let call: DirectCall = Arc::new(|_| Box::pin(async { http::Response::default() }));
        let routes = Routes {
            router: axum::Router::new(),
            direct: Some((&["/etcdserverpb.KV/Put"], call)),
        };
        let req = |path: &str, ct: &str| {
            http::Request::builder()
                .uri(path)
                .header(http::header::CONTENT_TYPE, ct)
                .body(())
                .expect("request")
        };
        // Unknown methods keep the router's "unknown method" answer; other content, its routes.
        for (path, ct, direct) in [
            ("/etcdserverpb.KV/Put", "application/grpc", true),
            ("/etcdserverpb.KV/Put", "application/grpc+proto", true),
            ("/etcdserverpb.KV/Nope", "application/grpc", false),
            ("/etcdserverpb.KV/Put", "text/plain", false),
        ] {
            assert_eq!(
                routes.direct_for(&req(path, ct)).is_some(),
                direct,
                "{path} {ct}"
            );
        }
        let plain = Routes::router(axum::Router::new());
        assert!(
            plain
                .direct_for(&req("/etcdserverpb.KV/Put", "application/grpc"))
                .is_none()
        );
    }

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().expect("header value"));
            grpc_timeout(&m)
        };
        assert_eq!(h("100m"), Some(Duration::from_millis(100)));
        assert_eq!(h("2S"), Some(Duration::from_secs(2)));
        assert_eq!(h("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(h("5u"), Some(Duration::from_micros(5)));
        assert_eq!(h("123456789S"), None, "more than 8 digits");
        assert_eq!(h("S"), None);
        assert_eq!(h("10x"), None);
    }
}
