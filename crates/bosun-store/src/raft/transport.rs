//! The Raft peer transport, client side: openraft's network ([`NetworkFactory`],
//! [`PeerClient`]) over tonic gRPC, and the pool of connections to peers that the `Forward`
//! call shares.
//!
//! Appends are pipelined on the `StreamAppend` bidirectional stream (a heartbeat, a stream of
//! one request, goes as one unary call instead); votes and pre-votes are unary calls;
//! snapshots stream in chunks. [`PeerPool::forward`] sends a `Forward` call whose request and
//! reply types the peer service (`server::forward`) pairs; this module only carries them.
//! Every call obeys the fault file (`--peer-fault-file`) that chaos tests use to cut links.
//!
//! This module knows nothing of the services of a member: the serving side of the same gRPC
//! service is `server::peer`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bosun_proto::raftpb::raft_peer_client::RaftPeerClient;
use bosun_proto::raftpb::{RaftReply, RaftRequest, SnapshotChunk};
use futures::{FutureExt, Stream, StreamExt};
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::state_machine::SnapshotFile;
use super::{Member, Snapshot, TypeConfig, Vote, decode, encode, io_err};
use crate::error::{EtcdError, EtcdResult};
use crate::limits::{MAX_PEER_MESSAGE, PEER_SNAPSHOT_CHUNK};

/// Injected peer faults for testing: a file listing, one per line, the peer URLs this member
/// must not reach, as if the network between them were cut. Re-read at most every 100 ms.
#[derive(Debug, Default)]
struct Faults {
    path: Option<std::path::PathBuf>,
    cached: Mutex<(Option<std::time::Instant>, Vec<String>)>,
}

impl Faults {
    fn blocked(&self, url: &str) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mut c = self.cached.lock();
        if c.0
            .is_none_or(|at| at.elapsed() > Duration::from_millis(100))
        {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            c.1 = text.lines().map(|l| l.trim().to_string()).collect();
            c.0 = Some(std::time::Instant::now());
        }
        c.1.iter().any(|u| u == url)
    }
}

/// What a member answers a removed member's Raft messages with.
pub const REMOVED: &str = "the member has been permanently removed from the cluster";

/// gRPC channels to peers, by peer URL, created lazily and reused.
#[derive(Debug, Default, Clone)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    faults: Arc<Faults>,
    /// Set when a peer answered that this member has been removed.
    removed: Arc<std::sync::atomic::AtomicBool>,
    /// Peers last found unreachable: contact lost and regained is logged once each, not on
    /// every heartbeat.
    unreachable: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Why a peer could not be called.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad peer URL: {0}")]
    Url(#[from] tonic::transport::Error),
    #[error("peer {0} is cut off by an injected fault")]
    Cut(String),
}

impl PeerPool {
    /// A pool whose calls obey the fault file at `path` (see [`Faults`]).
    pub fn with_fault_file(path: Option<std::path::PathBuf>) -> Self {
        PeerPool {
            channels: Arc::default(),
            faults: Arc::new(Faults {
                path,
                cached: Mutex::default(),
            }),
            removed: Arc::default(),
            unreachable: Arc::default(),
        }
    }

    /// Records the outcome of a call to the peer at `url`, logging changes of reachability.
    fn note_reachable(&self, url: &str, ok: bool) {
        let mut down = self.unreachable.lock();
        if ok {
            if down.remove(url) {
                tracing::info!(peer = url, "peer reachable again");
            }
        } else if down.insert(url.to_string()) {
            tracing::warn!(peer = url, "lost contact with peer");
        }
    }

    /// Whether a peer has told this member it was removed from the cluster.
    pub fn told_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A client for the peer at `url`.
    pub fn client(&self, url: &str) -> Result<RaftPeerClient<Channel>, PeerError> {
        if self.faults.blocked(url) {
            self.note_reachable(url, false);
            return Err(PeerError::Cut(url.to_string()));
        }
        let mut ch = self.channels.lock();
        let channel = match ch.get(url) {
            Some(c) => c.clone(),
            None => {
                let c = Endpoint::from_shared(url.to_string())?
                    .connect_timeout(Duration::from_secs(1))
                    .connect_with_connector_lazy(crate::coalesce::Connector);
                ch.insert(url.to_string(), c.clone());
                c
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }

    /// Sends a `Forward` call to the member at `url`: `req` encoded, the answer decoded as the
    /// `EtcdResult<R>` the member encoded (the peer service pairs each request with its reply
    /// type). A request that could not be sent fails with [`EtcdError::NoLeader`] (nothing was
    /// proposed); one whose answer was lost fails with [`EtcdError::Timeout`] (it may have been
    /// applied).
    pub async fn forward<Req: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        req: &Req,
    ) -> EtcdResult<R> {
        let mut c = self.client(url).map_err(|_| EtcdError::NoLeader)?;
        let data = encode(req).map_err(EtcdError::internal)?;
        let reply = c
            .forward(bosun_proto::raftpb::ForwardRequest { data })
            .await
            .map_err(|s| {
                tracing::debug!(error = %s, "forward to leader failed");
                if never_sent(&s) {
                    EtcdError::NoLeader
                } else {
                    EtcdError::Timeout
                }
            })?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(EtcdError::internal(reply.error));
        }
        decode::<EtcdResult<R>>(&reply.data).map_err(EtcdError::internal)?
    }
}

/// Whether a failed call certainly never reached the peer: the connection could not be made.
fn never_sent(s: &Status) -> bool {
    if s.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("Connection refused") {
            return true;
        }
        src = e.source();
    }
    s.message().contains("tcp connect error")
}

/// Creates [`PeerClient`]s for openraft.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory {
    pub pool: PeerPool,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, _target: u64, node: &Member) -> PeerClient {
        PeerClient {
            url: node.peer_urls.first().cloned().unwrap_or_default(),
            pool: self.pool.clone(),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    url: String,
    pool: PeerPool,
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&io_err(e)))
}

fn network(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&io_err(e)))
}

fn status_to_rpc(s: Status) -> RPCError<TypeConfig> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => unreachable(s),
        _ => network(s),
    }
}

fn reply_data(reply: RaftReply) -> Result<Vec<u8>, String> {
    if reply.error.is_empty() {
        Ok(reply.data)
    } else {
        Err(reply.error)
    }
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        which: &'static str,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut c = self.pool.client(&self.url).map_err(unreachable)?;
        let mut r = Request::new(RaftRequest {
            data: encode(req).map_err(network)?,
        });
        r.set_timeout(option.hard_ttl());
        let reply = match which {
            "append" => c.append_entries(r).await,
            "vote" => c.vote(r).await,
            _ => c.pre_vote(r).await,
        };
        self.pool.note_reachable(&self.url, reply.is_ok());
        let reply = reply.map_err(status_to_rpc)?.into_inner();
        if reply.error == REMOVED {
            self.pool
                .removed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let data = reply_data(reply).map_err(network)?;
        decode(&data).map_err(network)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, "append").await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let mut input = input;
            // Heartbeats come as streams of one request. One unary call costs both members far
            // less than opening a streaming call (and its pipeline on the peer) for each.
            let Some(first) = input.next().await else {
                return Ok(Box::pin(futures::stream::empty()) as BoxStream<'s, _>);
            };
            let input = match input.next().now_or_never() {
                Some(None) => {
                    let prev = first.prev_log_id;
                    let last = first.entries.last().map(|e| e.log_id).or(prev);
                    let reply: AppendEntriesResponse<TypeConfig> =
                        self.call(&first, &option, "append").await?;
                    let result = reply.into_stream_result(prev, last);
                    return Ok(
                        Box::pin(futures::stream::once(async { Ok(result) })) as BoxStream<'s, _>
                    );
                }
                Some(Some(second)) => futures::stream::iter([first, second])
                    .chain(input)
                    .left_stream(),
                None => futures::stream::once(async { first })
                    .chain(input)
                    .right_stream(),
            };
            let mut c = self.pool.client(&self.url).map_err(unreachable)?;
            // An injected cut ends a stream opened before it, as a cut network would.
            let (pool, url) = (self.pool.clone(), self.url.clone());
            // A request that cannot be encoded ends the stream; openraft then retries.
            let requests = input
                .take_while(move |_| futures::future::ready(!pool.faults.blocked(&url)))
                .map(|r| encode(&r).map(|data| RaftRequest { data }))
                .take_while(|r| futures::future::ready(r.is_ok()))
                .filter_map(|r| futures::future::ready(r.ok()));
            let replies = c
                .stream_append(requests)
                .await
                .map_err(status_to_rpc)?
                .into_inner();
            let out = replies.map(|r| match r {
                Ok(reply) => {
                    let data = reply_data(reply).map_err(network)?;
                    decode::<StreamAppendResult<TypeConfig>>(&data).map_err(network)
                }
                Err(s) => Err(status_to_rpc(s)),
            });
            Ok(Box::pin(out) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, "vote").await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, &option, "pre_vote").await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut c = self.pool.client(&self.url).map_err(unreachable)?;
        let header = encode(&(vote, snapshot.meta.clone())).map_err(network)?;
        let data = snapshot.snapshot.clone();
        let path = tokio::task::spawn_blocking(move || data.records())
            .await
            .map_err(|e| StreamingError::from(network(e)))?
            .map_err(|e| StreamingError::from(network(e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(2);
        // The reader feeds the stream chunk by chunk: memory stays bounded.
        let reader = tokio::spawn(async move {
            let mut f = tokio::fs::File::open(&path).await?;
            let mut first = Some(header);
            loop {
                let mut buf = vec![0u8; PEER_SNAPSHOT_CHUNK];
                let n = f.read(&mut buf).await?;
                buf.truncate(n);
                if n == 0 && first.is_none() {
                    return Ok::<(), std::io::Error>(());
                }
                let chunk = SnapshotChunk {
                    header: first.take().unwrap_or_default(),
                    data: buf,
                };
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
                if n == 0 {
                    return Ok(());
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let call = c.install_snapshot(stream);
        let reply = tokio::select! {
            r = call => r.map_err(|s| StreamingError::from(status_to_rpc(s)))?.into_inner(),
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        let _ = reader.await;
        let data = reply_data(reply).map_err(network)?;
        decode(&data).map_err(|e| StreamingError::from(network(e)))
    }
}
