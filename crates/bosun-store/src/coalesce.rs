//! TCP streams whose writes go out in batches ([`CoalescedStream`], from `bosun-net`, which
//! the store SDK shares), and the store's accept loop and peer connector over them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use bosun_net::coalesce::CoalescedStream;
use tokio::net::TcpStream;

/// The next connection `listener` accepts, with TCP_NODELAY set. A failed accept (out of
/// file descriptors and the like) is logged and retried after a pause instead of spinning.
pub(crate) async fn accept(listener: &tokio::net::TcpListener) -> CoalescedStream {
    loop {
        let accepted = listener
            .accept()
            .await
            .and_then(|(tcp, _)| CoalescedStream::new(tcp));
        match accepted {
            Ok(stream) => return stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connector for tonic channels (`Endpoint::connect_with_connector_lazy`): connects to the
/// URI's host and port with TCP_NODELAY set and returns a [`CoalescedStream`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Connector;

impl tonic::codegen::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<CoalescedStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}"))
            })?;
            let port = uri.port_u16().unwrap_or(80);
            // An IPv6 literal comes bracketed in a URI; connect wants it bare.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host, port)).await?;
            Ok(hyper_util::rt::TokioIo::new(CoalescedStream::new(tcp)?))
        })
    }
}
