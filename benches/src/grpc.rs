//! A minimal unary gRPC client over one HTTP/2 connection, for the load generator.
//!
//! Each call queues its HEADERS and its one DATA frame (with END_STREAM) on the connection
//! together, and the connection's bytes go out through a [`CoalescedStream`], so calls that
//! become ready together leave in one system call, as with grpc-go's batching writer. A
//! general-purpose client (tonic over hyper) waits for flow-control capacity between the two
//! frames and ends the request body with a separate empty frame: two or three writes per
//! call, and on a two-core machine the load generator's own writes then take CPU time from
//! the clusters it measures. The same client drives Bosun and etcd.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bosun_store::coalesce::CoalescedStream;
use bytes::{BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;

/// Per-call deadline: a call that takes longer fails (through any client library).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response message accepted, in bytes.
const MAX_RESPONSE: usize = 16 << 20;

/// Flow-control window of the connection and of each stream: large enough that small
/// responses never wait for a window update.
const WINDOW: u32 = 4 << 20;

/// One HTTP/2 connection to a gRPC server; clones share it.
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Bytes>,
    /// `http://host:port`, the prefix of every request URI.
    base: String,
}

impl Conn {
    /// Connects to `url` (`http://host:port`) and starts the connection's task.
    pub async fn connect(url: &str) -> anyhow::Result<Conn> {
        let base = url.trim_end_matches('/').to_string();
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("not an http:// URL: {url}"))?;
        let tcp = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect to {url}"))?;
        let io = CoalescedStream::new(tcp).context("start the connection's writer")?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .handshake::<_, Bytes>(io)
            .await
            .with_context(|| format!("HTTP/2 handshake with {url}"))?;
        tokio::spawn(async move {
            // The connection ends when every clone is dropped or the server goes away; calls
            // in flight then fail with the connection's error.
            let _ = connection.await;
        });
        Ok(Conn { send, base })
    }

    /// Calls the unary method `path` (e.g. `/etcdserverpb.KV/Put`) with `req`; fails after
    /// CALL_TIMEOUT without an answer.
    pub async fn unary<Resp: Message + Default>(
        &mut self,
        path: &str,
        req: &impl Message,
    ) -> anyhow::Result<Resp> {
        tokio::time::timeout(CALL_TIMEOUT, self.call(path, req))
            .await
            .map_err(|_| anyhow!("no answer within {CALL_TIMEOUT:?}"))?
    }

    /// One call, without a deadline.
    async fn call<Resp: Message + Default>(
        &mut self,
        path: &str,
        req: &impl Message,
    ) -> anyhow::Result<Resp> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .context("request URI")?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .context("build request")?;
        let len = req.encoded_len();
        let mut frame = BytesMut::with_capacity(5 + len);
        frame.put_u8(0);
        frame.put_u32(u32::try_from(len).context("request too large")?);
        req.encode(&mut frame).context("encode request")?;

        std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .context("connection")?;
        let (response, mut body) = self
            .send
            .send_request(request, false)
            .context("send request")?;
        body.send_data(frame.freeze(), true)
            .context("send request body")?;

        let response = response.await.context("response")?;
        if response.status() != http::StatusCode::OK {
            bail!("HTTP status {}", response.status());
        }
        // A call that fails before any message answers with the status in its headers.
        grpc_status(response.headers())?;
        let mut body = response.into_body();
        let mut message = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.context("response body")?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if message.len() + chunk.len() > MAX_RESPONSE + 5 {
                bail!("response larger than {MAX_RESPONSE} bytes");
            }
            message.extend_from_slice(&chunk);
        }
        match body.trailers().await.context("response trailers")? {
            Some(trailers) => grpc_status(&trailers)?,
            None => bail!("response without trailers (no grpc-status)"),
        }
        decode(&message)
    }
}

/// Fails with the call's status when `headers` carry a `grpc-status` other than 0.
fn grpc_status(headers: &HeaderMap) -> anyhow::Result<()> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    if status == "0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    bail!(
        "grpc-status {}: {message}",
        String::from_utf8_lossy(status.as_bytes())
    )
}

/// Decodes one length-prefixed, uncompressed gRPC message.
fn decode<Resp: Message + Default>(frame: &[u8]) -> anyhow::Result<Resp> {
    let Some((prefix, rest)) = frame.split_first_chunk::<5>() else {
        bail!("response without a message");
    };
    if prefix[0] != 0 {
        bail!("compressed response (flag {}) not supported", prefix[0]);
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len != rest.len() {
        bail!(
            "response message of {} bytes, prefix says {len}",
            rest.len()
        );
    }
    Resp::decode(rest).context("decode response")
}
