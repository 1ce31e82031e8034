//! The connection to one endpoint: one HTTP/2 connection, made on first use and replaced on
//! the first call after it fails, shared by every call and stream to that endpoint.
//!
//! tonic's `Channel` sends each call through a tower `Buffer` (a queue and a worker task)
//! before hyper's own connection task; [`Channel`] hands calls straight to hyper's
//! cloneable HTTP/2 sender, which the generated clients accept as their transport.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;

use crate::client::ConnectOptions;
use crate::error::Error;

/// Flow-control window of the connection and of each stream: large enough that a small call
/// or answer never waits for a WINDOW_UPDATE.
const WINDOW: u32 = 4 << 20;

type Sender = http2::SendRequest<Body>;
type BoxError = Box<dyn StdError + Send + Sync>;

/// The request never left this process: the connection could not be made, or it closed
/// before the request was handed to it. [`Error::from_status`] finds it in a status' source
/// chain and reports `Unavailable { connect_failed: true }`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotSent(pub(crate) String);

/// A lazily connected HTTP/2 connection to one endpoint; clones share it.
#[derive(Clone)]
pub(crate) struct Channel {
    shared: Arc<Shared>,
}

struct Shared {
    authority: Authority,
    opts: ConnectOptions,
    /// The current connection's sender; `None` before the first call and after a failed
    /// connect.
    sender: Mutex<Option<Sender>>,
    /// Held while connecting, so that concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Channel {
    /// A channel to `url` (`http://host:port`, normalised); connects on first use.
    pub(crate) fn new(url: &str, opts: &ConnectOptions) -> Result<Channel, Error> {
        let authority = url
            .strip_prefix("http://")
            .and_then(|a| a.parse::<Authority>().ok())
            .ok_or_else(|| Error::InvalidArgument(format!("endpoint {url}: bad host:port")))?;
        Ok(Channel {
            shared: Arc::new(Shared {
                authority,
                opts: opts.clone(),
                sender: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Connects now unless connected already.
    pub(crate) async fn connect(&self) -> Result<(), NotSent> {
        self.shared.sender().await.map(drop)
    }
}

impl Shared {
    /// The open connection's sender, connecting first when there is none or it closed.
    async fn sender(&self) -> Result<Sender, NotSent> {
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let sender = self.dial().await?;
        *self.lock() = Some(sender.clone());
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sender>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self) -> Option<Sender> {
        let mut guard = self.lock();
        match guard.as_ref() {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                *guard = None;
                None
            }
            None => None,
        }
    }

    /// Drops `failed` as the current connection (unless it was replaced already).
    fn forget(&self, failed: &Sender) {
        let mut guard = self.lock();
        if guard.as_ref().is_some_and(|s| s.is_closed()) || failed.is_closed() {
            *guard = None;
        }
    }

    /// TCP (with TCP_NODELAY) and the HTTP/2 handshake, within the connect timeout.
    async fn dial(&self) -> Result<Sender, NotSent> {
        let addr = self.authority.as_str();
        let limit = self.opts.connect_timeout;
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(NotSent(format!("connect to {addr}: {e}"))),
            Err(_) => return Err(NotSent(format!("connect to {addr}: timed out after {limit:?}"))),
        };
        tcp.set_nodelay(true)
            .map_err(|e| NotSent(format!("connect to {addr}: {e}")))?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .adaptive_window(false)
            .keep_alive_interval(self.opts.keep_alive_interval)
            .keep_alive_timeout(self.opts.keep_alive_timeout)
            .keep_alive_while_idle(true);
        let handshake = builder.handshake(TokioIo::new(tcp));
        let (sender, conn) = match tokio::time::timeout(limit, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(NotSent(format!("HTTP/2 handshake with {addr}: {e}"))),
            Err(_) => return Err(NotSent(format!("HTTP/2 handshake with {addr}: timed out"))),
        };
        let endpoint = addr.to_string();
        tokio::spawn(async move {
            // Ends when the server goes away, a keep-alive ping goes unanswered, or every
            // sender is dropped; calls in flight then fail with the connection's error.
            if let Err(e) = conn.await {
                tracing::debug!(endpoint, error = %e, "store connection ended");
            }
        });
        Ok(sender)
    }

    /// Sends `req` on the current connection; a request the connection gives back unsent
    /// (it closed meanwhile) goes once more on a new connection.
    async fn send(&self, mut req: http::Request<Body>) -> Result<http::Response<Incoming>, BoxError> {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        *req.uri_mut() = Uri::from_parts(parts)?;
        let mut retried = false;
        loop {
            let mut sender = self.sender().await.map_err(not_sent)?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => {
                    self.forget(&sender);
                    match e.take_message() {
                        Some(unsent) if !retried => {
                            retried = true;
                            req = unsent;
                        }
                        Some(_) => return Err(not_sent(NotSent(e.into_error().to_string()))),
                        None => return Err(sent_failed(e.into_error())),
                    }
                }
            }
        }
    }
}

/// A failure before anything was sent, as the UNAVAILABLE status tonic reports.
fn not_sent(e: NotSent) -> BoxError {
    let mut status = Status::unavailable(e.to_string());
    status.set_source(Arc::new(e));
    Box::new(status)
}

/// A failure after the request was handed to the connection: it may have been sent.
fn sent_failed(e: hyper::Error) -> BoxError {
    let mut status = Status::unavailable(format!("connection failed: {e}"));
    status.set_source(Arc::new(e));
    Box::new(status)
}

impl tower_service::Service<http::Request<Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.send(req).await })
    }
}
