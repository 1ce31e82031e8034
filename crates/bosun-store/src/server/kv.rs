//! The etcd KV service.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bosun_proto::etcdserverpb::kv_server::{Kv, KvServer};
use bosun_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
    request_op,
};
use futures::future::BoxFuture;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::Service;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::Replica;
use crate::apply::{self, Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};

/// The KV service of one member.
#[derive(Debug, Clone)]
pub struct KvService {
    pub replica: Arc<Replica>,
}

/// Whether a txn only reads: then it needs no Raft round and is served like a Range.
fn read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(n)) => read_only(n),
            _ => false,
        })
}

/// Whether a txn may add data (and so is subject to the quota).
pub(crate) fn adds_data(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(n)) => adds_data(n),
            _ => false,
        })
}

impl KvService {
    /// A Range at this member: linearizable unless the request asks for serializable.
    pub async fn range(&self, r: &RangeRequest) -> EtcdResult<RangeResponse> {
        if r.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        if !r.serializable {
            self.replica.read_barrier().await?;
        }
        let mut resp = self.replica.shared.mvcc.range(r)?;
        self.replica.fill(&mut resp.header);
        Ok(resp)
    }

    async fn txn(&self, t: TxnRequest) -> EtcdResult<TxnResponse> {
        if read_only(&t) {
            self.replica.check_size(t.encoded_len())?;
            apply::check_txn(&t, self.replica.limits())?;
            // etcd serves read-only txns without a proposal, after a read barrier.
            self.replica.read_barrier().await?;
            let mvcc = &self.replica.shared.mvcc;
            let mut tx = mvcc.write();
            let res = apply::execute(&mut tx, &Command::Txn(t));
            drop(tx);
            return match res {
                CommandResult::Txn(mut r) => {
                    self.replica.fill(&mut r.header);
                    Ok(r)
                }
                CommandResult::Error(e) => Err(e),
                other => Err(other.unexpected()),
            };
        }
        let cmd = Command::Txn(t);
        self.replica.check_write(&cmd).await?;
        match self.replica.propose(cmd).await? {
            CommandResult::Txn(mut r) => {
                self.replica.fill(&mut r.header);
                Ok(r)
            }
            other => Err(other.unexpected()),
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(KvService::range(self, req.get_ref()).await?))
    }

    type RangeStreamStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

    async fn range_stream(
        &self,
        _req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "RangeStream is not served: use Range with limit",
        ))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let cmd = Command::Put(req.into_inner());
        self.replica.check_write(&cmd).await?;
        match self.replica.propose(cmd).await? {
            CommandResult::Put(mut r) => {
                self.replica.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let cmd = Command::DeleteRange(req.into_inner());
        self.replica.check_write(&cmd).await?;
        match self.replica.propose(cmd).await? {
            CommandResult::DeleteRange(mut r) => {
                self.replica.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Ok(Response::new(KvService::txn(self, req.into_inner()).await?))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let c = req.into_inner();
        match self.replica.propose(Command::Compact(c)).await? {
            CommandResult::Compact(mut r) => {
                self.replica.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }
}

/// The KV service's methods, as request paths.
pub const METHODS: &[&str] = &[
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
];

/// The KV service as the client port serves it: the generated server, except for Txn, whose
/// requests are decoded by [`TxnCodec`].
#[derive(Clone)]
pub struct KvRoutes {
    server: KvServer<KvService>,
    kv: Arc<KvService>,
    max_decoding: usize,
}

impl KvRoutes {
    /// Serves `kv`, accepting requests of up to `max_decoding` bytes.
    pub fn new(kv: KvService, max_decoding: usize) -> Self {
        KvRoutes {
            server: KvServer::new(kv.clone())
                .max_decoding_message_size(max_decoding)
                .max_encoding_message_size(usize::MAX),
            kv: Arc::new(kv),
            max_decoding,
        }
    }

    /// A handler of [`METHODS`] for [`crate::listen::Routes`]: the calls the router would
    /// give these routes, without its layers.
    pub fn direct(&self) -> crate::listen::DirectCall {
        let kv = self.clone();
        Arc::new(move |req| {
            let mut kv = kv.clone();
            Box::pin(async move {
                let Ok(res) = kv.call(req).await;
                res.map(axum::body::Body::new)
            })
        })
    }
}

impl NamedService for KvRoutes {
    const NAME: &'static str = <KvServer<KvService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for KvRoutes
where
    B: tonic::codegen::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Every KV call is unary: its request ends with its one message.
        let req = req.map(OneMessage::new);
        if req.uri().path() != "/etcdserverpb.KV/Txn" {
            return Box::pin(self.server.call(req));
        }
        struct Txn(Arc<KvService>);
        impl UnaryService<TxnRequest> for Txn {
            type Response = TxnResponse;
            type Future = BoxFuture<'static, Result<Response<TxnResponse>, Status>>;
            fn call(&mut self, req: Request<TxnRequest>) -> Self::Future {
                let kv = self.0.clone();
                Box::pin(async move { Kv::txn(&*kv, req).await })
            }
        }
        let kv = self.kv.clone();
        let mut grpc = tonic::server::Grpc::new(TxnCodec)
            .apply_max_message_size_config(Some(self.max_decoding), Some(usize::MAX));
        Box::pin(async move { Ok(grpc.unary(Txn(kv), req).await) })
    }
}

/// The body of a unary gRPC request, which ends as soon as its one length-prefixed message
/// has arrived. tonic's server waits for the end of the request stream before it calls the
/// handler; grpc-go's clients send it in the message's DATA frame, but tonic's (so the
/// `etcd-client` crate) send it in a separate empty frame, often in a separate write, and the
/// call would wait for that frame. A client that sends more than one message gets the first
/// handled, as before; the rest of its stream is not read (HTTP/2 lets the server answer
/// first and reset the stream with NO_ERROR).
pub struct OneMessage<B> {
    inner: B,
    /// The message's 5-byte prefix, as far as it has arrived.
    prefix: [u8; GRPC_PREFIX],
    /// Body bytes seen so far.
    seen: u64,
    /// Whether the message is complete: the body reports its end.
    done: bool,
}

/// gRPC's message prefix: a compression flag and a 4-byte big-endian length.
const GRPC_PREFIX: usize = 5;

impl<B> OneMessage<B> {
    pub fn new(inner: B) -> Self {
        OneMessage {
            inner,
            prefix: [0; GRPC_PREFIX],
            seen: 0,
            done: false,
        }
    }

    /// Notes `chunk`, just received; true once the first message is complete.
    fn note(&mut self, chunk: &[u8]) -> bool {
        let have = usize::try_from(self.seen).unwrap_or(usize::MAX);
        if have < GRPC_PREFIX {
            let take = chunk.len().min(GRPC_PREFIX - have);
            self.prefix[have..have + take].copy_from_slice(&chunk[..take]);
        }
        self.seen += chunk.len() as u64;
        if self.seen < GRPC_PREFIX as u64 {
            return false;
        }
        let [_, len @ ..] = self.prefix;
        self.seen >= GRPC_PREFIX as u64 + u64::from(u32::from_be_bytes(len))
    }
}

impl<B> http_body::Body for OneMessage<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
            && self.note(data)
        {
            self.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.done {
            http_body::SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Protobuf's codec for Txn, except that a request nested deeper than the decoder allows
/// (prost stops at 100 levels of messages, 50 of txns) gets etcd's answer to a txn nested
/// beyond its operation budget, "too many operations", not an internal decode error.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxnCodec;

impl Codec for TxnCodec {
    type Encode = TxnResponse;
    type Decode = TxnRequest;
    type Encoder = tonic_prost::ProstEncoder<TxnResponse>;
    type Decoder = TxnDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        TxnDecoder
    }
}

/// See [`TxnCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TxnDecoder;

impl Decoder for TxnDecoder {
    type Item = TxnRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<TxnRequest>, Status> {
        match TxnRequest::decode(buf) {
            Ok(t) => Ok(Some(t)),
            // Only nested txns recurse in a TxnRequest; prost names no other cause this way.
            Err(e) if e.to_string().ends_with("recursion limit reached") => {
                Err(EtcdError::TooManyOps.into())
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    type Chunk = Result<Frame<Bytes>, Infallible>;

    /// A body fed through a channel: it ends only when the sender is dropped.
    fn channel_body() -> (
        futures::channel::mpsc::UnboundedSender<Chunk>,
        OneMessage<StreamBody<futures::channel::mpsc::UnboundedReceiver<Chunk>>>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, OneMessage::new(StreamBody::new(rx)))
    }

    fn data(b: &[u8]) -> Chunk {
        Ok(Frame::data(Bytes::copy_from_slice(b)))
    }

    #[tokio::test]
    async fn a_unary_body_ends_with_its_message_not_with_the_stream() {
        let (tx, body) = channel_body();
        // A 6-byte message split across three frames, the prefix itself split; the stream
        // stays open (no end-of-stream yet), as with a client that ends it in a later frame.
        tx.unbounded_send(data(&[0, 0, 0])).unwrap();
        tx.unbounded_send(data(&[0, 6, 1, 2])).unwrap();
        tx.unbounded_send(data(&[3, 4, 5, 6])).unwrap();
        let collected = tokio::time::timeout(std::time::Duration::from_secs(5), body.collect())
            .await
            .expect("the body ended without the end of the stream")
            .unwrap();
        assert_eq!(
            &collected.to_bytes()[..],
            &[0, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6]
        );
        drop(tx);
    }

    #[tokio::test]
    async fn an_incomplete_message_waits_for_more() {
        let (tx, mut body) = channel_body();
        tx.unbounded_send(data(&[0, 0, 0, 0, 4, 1, 2])).unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(
            first.into_data().unwrap(),
            Bytes::from_static(&[0, 0, 0, 0, 4, 1, 2])
        );
        assert!(!http_body::Body::is_end_stream(&body));
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), body.frame()).await;
        assert!(pending.is_err(), "ended before the message was complete");
        tx.unbounded_send(data(&[3, 4])).unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(http_body::Body::is_end_stream(&body));
        assert!(body.frame().await.is_none());
        // An empty body (no message) ends when the stream does, as before.
        let (tx, body) = channel_body();
        drop(tx);
        assert!(body.collect().await.unwrap().to_bytes().is_empty());
    }
}
