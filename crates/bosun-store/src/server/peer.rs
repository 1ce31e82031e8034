//! The Raft peer service, serving side: the `RaftPeer` gRPC service a member's peers call.
//! Appends, votes and snapshots are decoded and handed to openraft; a removed member's votes
//! are refused; `Forward` calls are decoded into their typed requests and served by
//! [`super::forward`].

use std::sync::Arc;

use bosun_proto::raftpb::raft_peer_server::RaftPeer;
use bosun_proto::raftpb::{RaftReply, RaftRequest, SnapshotChunk};
use futures::StreamExt;
use openraft::base::BoxStream;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};

use super::Replica;
use super::forward::ForwardRequest;
use crate::raft::state_machine::SnapshotFile;
use crate::raft::transport::REMOVED;
use crate::raft::{Snapshot, SnapshotMeta, TypeConfig, Vote, decode, encode};

/// The peer-facing gRPC service of a member.
#[derive(Debug, Clone)]
pub struct PeerService {
    pub replica: Arc<Replica>,
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

fn decode_req<T: DeserializeOwned>(r: &RaftRequest) -> Result<T, Status> {
    decode(&r.data).map_err(|e| Status::invalid_argument(format!("decode peer request: {e}")))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_req(req.get_ref())?;
        match self.replica.raft.append_entries(rpc).await {
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
        let output = self.replica.raft.stream_append(input).map(|r| match r {
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
        if self.replica.is_removed(rpc.vote.leader_id().node_id) {
            return err_reply(REMOVED);
        }
        match self.replica.raft.vote(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => err_reply(e),
        }
    }

    async fn pre_vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode_req(req.get_ref())?;
        if self.replica.is_removed(rpc.vote.leader_id().node_id) {
            return err_reply(REMOVED);
        }
        match self.replica.raft.pre_vote(rpc).await {
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
        let dir = self.replica.cfg.data_dir.join("snap");
        // Removed when this call ends, whether the snapshot arrived whole or not.
        let (f, path) = crate::raft::state_machine::incoming_snapshot(&dir)
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
        let res = self
            .replica
            .raft
            .install_full_snapshot(vote, snapshot)
            .await;
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
        let data = fwd
            .serve_forwarded(&self.replica)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftReply {
            data,
            error: String::new(),
        }))
    }
}
