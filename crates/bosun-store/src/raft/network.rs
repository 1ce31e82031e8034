//! Raft peer transport on tonic gRPC, and forwarding of client requests to the leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bosun_proto::raftpb::raft_peer_client::RaftPeerClient;
use bosun_proto::raftpb::raft_peer_server::RaftPeer;
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
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::state_machine::SnapshotFile;
use super::{Member, Snapshot, SnapshotMeta, TypeConfig, Vote, decode, encode, io_err};
use crate::apply::{Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};
use crate::limits::{MAX_PEER_MESSAGE, PEER_SNAPSHOT_CHUNK};
use crate::server::Node;

/// A request a member sends to the leader (or, for `Members`, to any member).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// Propose several commands, each answered on its own (see `server::write_batch`).
    WriteBatch(Vec<Command>),
    /// Run the read index protocol and return the index to wait for. `from` is the member
    /// asking and `term` its Raft term, read after the reads it asks for arrived: when the two
    /// of them make a quorum, the request itself confirms the leadership (see
    /// `Node::read_index_confirmed_by`).
    ReadIndex { from: u64, term: u64 },
    /// A keep-alive of a lease: the leader owns the expiry clocks.
    LeaseKeepAlive(i64),
    /// Seconds left on a lease by the leader's clock.
    LeaseRemaining(i64),
    /// A membership change.
    Member(MemberOp),
    /// The cluster ID and the members, for a member that joins.
    Members,
}

/// The answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Write(CommandResult),
    /// One `Write` or `Error` per command of a `WriteBatch`, in order.
    WriteBatch(Vec<ForwardReply>),
    ReadIndex(u64),
    /// Granted TTL after a keep-alive, or seconds left; -1 when the lease does not exist.
    Lease(i64),
    Member(MemberReply),
    Members {
        cluster_id: u64,
        members: Vec<(u64, Member)>,
    },
    Error(EtcdError),
}

impl ForwardReply {
    /// The reply as a result: `Error` becomes `Err`.
    pub fn into_result(self) -> EtcdResult<ForwardReply> {
        match self {
            ForwardReply::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

/// A membership change, decided and proposed by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberOp {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// A started member announces its name and client URLs, as etcd's members publish theirs.
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// The outcome of a [`MemberOp`]: the member concerned and the members afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberReply {
    pub id: u64,
    pub members: Vec<(u64, Member, bool)>,
}

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

    /// Sends a forwarded request to the member at `url`. A request that could not be sent
    /// fails with [`EtcdError::NoLeader`] (nothing was proposed); one whose answer was lost
    /// fails with [`EtcdError::Timeout`] (it may have been applied).
    pub async fn forward(&self, url: &str, req: &ForwardRequest) -> EtcdResult<ForwardReply> {
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
        decode::<ForwardReply>(&reply.data)
            .map_err(EtcdError::internal)?
            .into_result()
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
    async fn call<Req: Serialize, Resp: for<'a> Deserialize<'a>>(
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

/// The peer-facing gRPC service of a member.
#[derive(Debug, Clone)]
pub struct PeerService {
    pub node: Arc<Node>,
}

fn ok_reply<T: Serialize>(v: &T) -> Result<Response<RaftReply>, Status> {
    let data = encode(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply {
        data,
        error: String::new(),
    }))
}

fn err_reply(e: impl std::fmt::Display) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply {
        data: Vec::new(),
        error: e.to_string(),
    }))
}

fn decode_req<T: for<'a> Deserialize<'a>>(r: &RaftRequest) -> Result<T, Status> {
    decode(&r.data).map_err(|e| Status::invalid_argument(format!("decode peer request: {e}")))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_req(req.get_ref())?;
        match self.node.raft.append_entries(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => err_reply(e),
        }
    }

    type StreamAppendStream = BoxStream<'static, Result<RaftReply, Status>>;

    async fn stream_append(
        &self,
        req: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // Requests that fail to decode end the input; the leader sees the stream end and
        // starts over.
        let input = req
            .into_inner()
            .map(|r| {
                r.ok()
                    .and_then(|r| decode::<AppendEntriesRequest<TypeConfig>>(&r.data).ok())
            })
            .take_while(|r| futures::future::ready(r.is_some()))
            .filter_map(futures::future::ready);
        let output = self.node.raft.stream_append(input).map(|r| match r {
            Ok(res) => encode(&res)
                .map(|data| RaftReply {
                    data,
                    error: String::new(),
                })
                .map_err(|e| Status::internal(e.to_string())),
            Err(fatal) => Err(Status::unavailable(fatal.to_string())),
        });
        Ok(Response::new(Box::pin(output)))
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode_req(req.get_ref())?;
        if self.node.is_removed(rpc.vote.leader_id().node_id) {
            return err_reply(REMOVED);
        }
        match self.node.raft.vote(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => err_reply(e),
        }
    }

    async fn pre_vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode_req(req.get_ref())?;
        if self.node.is_removed(rpc.vote.leader_id().node_id) {
            return err_reply(REMOVED);
        }
        match self.node.raft.pre_vote(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => err_reply(e),
        }
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        use tokio::io::AsyncWriteExt;
        let mut stream = req.into_inner();
        let dir = self.node.cfg.data_dir.join("snap");
        // Removed when this call ends, whether the snapshot arrived whole or not.
        let (f, path) = super::state_machine::incoming_snapshot(&dir)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut f = tokio::fs::File::from_std(f);
        let mut header: Option<(Vote, SnapshotMeta)> = None;
        while let Some(chunk) = stream.message().await? {
            if header.is_none() {
                header = Some(
                    decode(&chunk.header).map_err(|e| Status::invalid_argument(e.to_string()))?,
                );
            }
            f.write_all(&chunk.data)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        f.sync_all()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let (vote, meta) =
            header.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let bytes = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        tracing::info!(
            snapshot = ?meta.last_log_id,
            bytes,
            "installing a snapshot streamed from the leader"
        );
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile {
                path: path.to_path_buf(),
            },
        };
        let res = self.node.raft.install_full_snapshot(vote, snapshot).await;
        drop(path);
        match res {
            Ok(r) => ok_reply(&r),
            Err(e) => err_reply(e),
        }
    }

    async fn forward(
        &self,
        req: Request<bosun_proto::raftpb::ForwardRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let fwd: ForwardRequest = decode(&req.get_ref().data)
            .map_err(|e| Status::invalid_argument(format!("decode forward: {e}")))?;
        let reply = self.node.handle_peer_forward(fwd).await;
        ok_reply(&reply)
    }
}
