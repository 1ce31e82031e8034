//! containerd (or any CRI v1 runtime) through its gRPC API (`k8s-cri`): the connection here
//! (every call timed, as Kubernetes' instrumented runtime service does); the runtime that
//! drives pods over it beside it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::metrics;

pub mod atomic;
pub mod convert;
pub mod host;
pub mod logs;
pub mod plan;
pub mod runtime;
pub mod sources;

pub use runtime::CriRuntime;

/// CRI messages can be large (ListContainers on a busy node): accept up to 16 MiB, as the
/// kubelet does (`maxMsgSize`).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A connection to a CRI runtime: its runtime and image services over one channel.
#[derive(Debug, Clone)]
pub struct CriClient {
    /// RunPodSandbox, CreateContainer, ... .
    pub runtime: RuntimeServiceClient<Timed<Channel>>,
    /// ImageStatus, PullImage, ... .
    pub images: ImageServiceClient<Timed<Channel>>,
}

/// A gRPC channel whose calls are counted and timed in
/// `kubelet_runtime_operations_total`, `kubelet_runtime_operations_duration_seconds` and
/// `kubelet_runtime_operations_errors_total` by `operation_type` (Kubernetes'
/// `instrumentedRuntimeService`): the time until the answer's headers, which a CRI runtime
/// sends with the answer of a unary call; an error is a transport error or a non-zero
/// `grpc-status` in them (a failed call's trailers-only answer).
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let operation = metrics::operation_type(req.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            let failed = r.as_ref().map_or(true, |resp| {
                resp.headers()
                    .get("grpc-status")
                    .is_some_and(|v| v.as_bytes() != b"0")
            });
            metrics::observe_runtime_operation(operation, started.elapsed(), failed);
            r
        })
    }
}

/// The socket path of a `--container-runtime-endpoint` (`unix:///run/containerd/containerd.sock`
/// or a bare path).
pub fn socket_path(endpoint: &str) -> anyhow::Result<PathBuf> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(p) => p,
        None if endpoint.starts_with('/') => endpoint,
        None => bail!(
            "--container-runtime-endpoint {endpoint:?}: only unix sockets are supported (unix:///path/to/socket)"
        ),
    };
    if path.is_empty() {
        bail!("--container-runtime-endpoint {endpoint:?}: the socket path is empty");
    }
    Ok(PathBuf::from(path))
}

impl CriClient {
    /// Connects to the runtime at `endpoint` (lazily: the first call dials, and a runtime
    /// that restarts is dialled again), with `timeout` on every call.
    pub fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let path = socket_path(endpoint)?;
        let channel =
            Endpoint::try_from("http://cri.invalid")
                .context("CRI endpoint")?
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }));
        let timed = Timed { inner: channel };
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(timed.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(timed).max_decoding_message_size(MAX_MESSAGE),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("/x.sock").unwrap(), PathBuf::from("/x.sock"));
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://").is_err());
    }
}
