//! The etcd KV service.

use std::sync::Arc;

use bosun_proto::etcdserverpb::kv_server::Kv;
use bosun_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
    request_op,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::Node;
use crate::apply::{self, Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};

/// The KV service of one member.
#[derive(Debug, Clone)]
pub struct KvService {
    pub node: Arc<Node>,
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
            self.node.read_barrier().await?;
        }
        let mut resp = self.node.shared.mvcc.range(r)?;
        self.node.fill(&mut resp.header);
        Ok(resp)
    }

    async fn txn(&self, t: TxnRequest) -> EtcdResult<TxnResponse> {
        if read_only(&t) {
            self.node.check_size(t.encoded_len())?;
            apply::check_txn(&t, self.node.limits())?;
            // etcd serves read-only txns without a proposal, after a read barrier.
            self.node.read_barrier().await?;
            let mvcc = &self.node.shared.mvcc;
            let mut tx = mvcc.write();
            let res = apply::execute(&mut tx, &Command::Txn(t));
            drop(tx);
            return match res {
                CommandResult::Txn(mut r) => {
                    self.node.fill(&mut r.header);
                    Ok(r)
                }
                CommandResult::Error(e) => Err(e),
                other => Err(other.unexpected()),
            };
        }
        let cmd = Command::Txn(t);
        self.node.check_write(&cmd).await?;
        match self.node.propose(cmd).await? {
            CommandResult::Txn(mut r) => {
                self.node.fill(&mut r.header);
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
        self.node.check_write(&cmd).await?;
        match self.node.propose(cmd).await? {
            CommandResult::Put(mut r) => {
                self.node.fill(&mut r.header);
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
        self.node.check_write(&cmd).await?;
        match self.node.propose(cmd).await? {
            CommandResult::DeleteRange(mut r) => {
                self.node.fill(&mut r.header);
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
        match self.node.propose(Command::Compact(c)).await? {
            CommandResult::Compact(mut r) => {
                self.node.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }
}
