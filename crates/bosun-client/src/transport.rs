//! The connection to one endpoint: one HTTP/2 connection, made on first use and replaced on
//! the first call after it fails, shared by every call and stream to that endpoint.
//!
//! tonic's `Channel` sends each call through a tower `Buffer` (a queue and a worker task),
//! then hyper's dispatcher (another queue, to the connection's task), which spawns a task per
//! request to await its answer and often one more to send its body. [`Channel`] uses h2, the
//! HTTP/2 implementation under hyper, directly: a call queues its HEADERS and, when the
//! body is complete at once (every unary call), its DATA with END_STREAM on the connection
//! itself, and awaits the answer in its own task. Only a streaming request body (watch,
//! lease keep-alive) gets a task that pipes it. The generated clients take [`Channel`] as
//! their transport (a tower `Service`).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, Scheme, Uri};
use http_body::{Body as _, Frame};
use tokio::net::TcpStream;
use tonic::Status;
use tonic::body::Body;

use crate::client::ConnectOptions;
use crate::error::Error;

/// Flow-control window of the connection and of each stream: large enough that a small call
/// or answer never waits for a WINDOW_UPDATE.
const WINDOW: u32 = 4 << 20;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The request never left this process: the connection could not be made, or it closed
/// before the request was handed to it. [`Error::from_status`] finds it in a status' source
/// chain and reports `Unavailable { connect_failed: true }`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NotSent(pub(crate) String);

/// One HTTP/2 connection: its sender, and whether its task has ended.
#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

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
    sender: Mutex<Option<Conn>>,
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
        self.shared.conn().await.map(drop)
    }
}

impl Shared {
    /// The open connection's sender, connecting first when there is none or it closed.
    async fn conn(&self) -> Result<Conn, NotSent> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self) -> Option<Conn> {
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
    fn forget(&self, failed: &Conn) {
        let mut guard = self.lock();
        if guard
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.closed, &failed.closed))
        {
            *guard = None;
        }
    }

    /// TCP (with TCP_NODELAY) and the HTTP/2 handshake, within the connect timeout.
    async fn dial(&self) -> Result<Conn, NotSent> {
        let addr = self.authority.as_str();
        let limit = self.opts.connect_timeout;
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(NotSent(format!("connect to {addr}: {e}"))),
            Err(_) => {
                return Err(NotSent(format!(
                    "connect to {addr}: timed out after {limit:?}"
                )));
            }
        };
        // Writes go out in batches: calls that become ready together leave in one write.
        let tcp = bosun_net::coalesce::CoalescedStream::new(tcp)
            .map_err(|e| NotSent(format!("connect to {addr}: {e}")))?;
        let handshake = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .handshake::<_, Bytes>(tcp);
        let (send, mut conn) = match tokio::time::timeout(limit, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(NotSent(format!("HTTP/2 handshake with {addr}: {e}"))),
            Err(_) => return Err(NotSent(format!("HTTP/2 handshake with {addr}: timed out"))),
        };
        let closed = Arc::new(AtomicBool::new(false));
        let pinger = conn.ping_pong();
        let (dead_tx, dead_rx) = tokio::sync::oneshot::channel::<String>();
        if let (Some(pinger), Some(interval)) = (pinger, self.opts.keep_alive_interval) {
            tokio::spawn(keep_alive(
                pinger,
                interval,
                self.opts.keep_alive_timeout,
                dead_tx,
            ));
        }
        let endpoint = addr.to_string();
        let ended = closed.clone();
        tokio::spawn(async move {
            // Ends when the server goes away, a keep-alive ping goes unanswered, or every
            // sender is dropped; dropping the connection fails the calls in flight.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(endpoint, error = %e, "store connection ended");
                },
                Ok(why) = dead_rx => tracing::debug!(endpoint, why, "store connection closed"),
            }
            ended.store(true, Ordering::Release);
        });
        Ok(Conn { send, closed })
    }

    /// Sends `req` on the current connection; a request the connection refuses before taking
    /// it (it closed meanwhile) goes once more on a new connection.
    async fn send(&self, req: http::Request<Body>) -> Result<http::Response<RecvBody>, BoxError> {
        let (mut parts, mut body) = req.into_parts();
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        parts.uri = Uri::from_parts(uri)?;
        // What the body has ready now: all of it for a unary call.
        let mut chunks: Vec<Bytes> = Vec::new();
        let ended = std::future::poll_fn(|cx| {
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            chunks.push(data);
                        }
                    }
                    Poll::Ready(Some(Err(status))) => return Poll::Ready(Err(status)),
                    Poll::Ready(None) => return Poll::Ready(Ok(true)),
                    Poll::Pending => return Poll::Ready(Ok(false)),
                }
            }
        })
        .await?;
        let mut retried = false;
        let (conn, mut send) = loop {
            let conn = self.conn().await.map_err(not_sent)?;
            let mut send = conn.send.clone();
            match std::future::poll_fn(|cx| send.poll_ready(cx)).await {
                Ok(()) => break (conn, send),
                Err(e) => {
                    // Nothing of this request was queued.
                    self.forget(&conn);
                    if retried {
                        return Err(not_sent(NotSent(format!("connection closed: {e}"))));
                    }
                    retried = true;
                }
            }
        };
        let head = http::Request::from_parts(parts, ());
        let (response, mut stream) = match send.send_request(head, ended && chunks.is_empty()) {
            Ok(opened) => opened,
            Err(e) => {
                // Refused before anything was queued.
                self.forget(&conn);
                return Err(not_sent(NotSent(format!("connection closed: {e}"))));
            }
        };
        let last = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if let Err(e) = stream.send_data(chunk, ended && i + 1 == last) {
                self.forget(&conn);
                return Err(sent_failed(e));
            }
        }
        if !ended {
            tokio::spawn(pipe(body, stream));
        }
        match response.await {
            Ok(resp) => Ok(resp.map(|recv| RecvBody {
                recv,
                data_done: false,
            })),
            Err(e) => {
                if conn.is_closed() {
                    self.forget(&conn);
                }
                Err(sent_failed(e))
            }
        }
    }
}

/// Sends the rest of a streaming request body as it comes; resets the stream if the body
/// fails, and stops when the server resets or ends it.
async fn pipe(mut body: Body, mut stream: h2::SendStream<Bytes>) {
    loop {
        let frame = std::future::poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        match frame {
            None => return,
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && stream.send_data(data, false).is_err()
                {
                    return;
                }
            }
            Some(Some(Err(_))) => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            Some(None) => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
        }
    }
}

/// Pings every `interval`; an answer missing after `timeout` closes the connection.
async fn keep_alive(
    mut pinger: h2::PingPong,
    interval: std::time::Duration,
    timeout: std::time::Duration,
    mut dead: tokio::sync::oneshot::Sender<String>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = dead.closed() => return,
        }
        match tokio::time::timeout(timeout, pinger.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                let _ = dead.send(format!("keep-alive ping unanswered within {timeout:?}"));
                return;
            }
        }
    }
}

/// An answer's body: its DATA frames (their flow-control capacity released as they are
/// read), then its trailers.
pub(crate) struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.data_done = true,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// A failure before anything was sent, as the UNAVAILABLE status tonic reports.
fn not_sent(e: NotSent) -> BoxError {
    let mut status = Status::unavailable(e.to_string());
    status.set_source(Arc::new(e));
    Box::new(status)
}

/// A failure after the request was handed to the connection: it may have been sent.
fn sent_failed(e: h2::Error) -> BoxError {
    let mut status = Status::unavailable(format!("connection failed: {e}"));
    status.set_source(Arc::new(e));
    Box::new(status)
}

impl tower_service::Service<http::Request<Body>> for Channel {
    type Response = http::Response<RecvBody>;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{Client, GetOptions};

    /// A connection whose peer never answers (not even a ping) is closed after the
    /// keep-alive timeout: the call fails as a lost connection, long before its deadline.
    #[tokio::test]
    async fn unanswered_keep_alive_closes_the_connection() -> Result<(), BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let silent = tokio::spawn(async move {
            // Accepts and holds the socket, reading nothing and writing nothing.
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(held);
        });
        let opts = ConnectOptions::default()
            .with_keep_alive(Some(Duration::from_millis(100)), Duration::from_millis(200))
            .with_request_timeout(Some(Duration::from_secs(20)))
            .with_max_attempts(1);
        let client = Client::connect([addr.to_string()], opts).await?;
        let started = Instant::now();
        let err = client
            .get("k", GetOptions::new())
            .await
            .err()
            .ok_or("a silent server answered")?;
        let took = started.elapsed();
        silent.abort();
        assert!(
            matches!(
                err,
                Error::Unavailable {
                    connect_failed: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(took < Duration::from_secs(5), "failed after {took:?}");
        Ok(())
    }

    /// A connection the server closed is replaced on the next call; a refused dial is
    /// reported as never sent.
    #[tokio::test]
    async fn a_closed_connection_is_replaced_and_a_refused_one_is_not_sent() -> Result<(), BoxError>
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let ch = Channel::new(&format!("http://{addr}"), &ConnectOptions::default())?;
        let accepted = tokio::spawn(async move { listener.accept().await });
        ch.connect().await?;
        let first = ch.shared.cached().ok_or("no connection after connect")?;
        let (server_side, _) = accepted.await??;
        // The server goes away: its socket closes and nobody listens on the port any more.
        drop(server_side);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !first.is_closed() {
            assert!(Instant::now() < deadline, "closed connection not noticed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            ch.shared.cached().is_none(),
            "a closed connection is reused"
        );
        let err = ch
            .connect()
            .await
            .err()
            .ok_or("connected to a closed port")?;
        let status = match not_sent(err).downcast::<Status>() {
            Ok(s) => *s,
            Err(e) => return Err(e),
        };
        assert!(matches!(
            Error::from(status),
            Error::Unavailable {
                connect_failed: true,
                ..
            }
        ));
        // A server back on the same port gets a new connection.
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let accepted = tokio::spawn(async move { listener.accept().await });
        ch.connect().await?;
        let second = ch.shared.cached().ok_or("no new connection")?;
        assert!(!Arc::ptr_eq(&first.closed, &second.closed));
        let _held = accepted.await??;
        Ok(())
    }
}
