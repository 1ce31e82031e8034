//! The member: Raft handle, state machine, and the etcd v3 gRPC services on top.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bosun_proto::etcdserverpb::{
    AlarmRequest, AlarmType, ResponseHeader, alarm_request::AlarmAction,
};
use openraft::ReadPolicy;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use parking_lot::Mutex;

use crate::apply::{Command, CommandResult, Limits};
use crate::config::StoreConfig;
use crate::error::{EtcdError, EtcdResult};
use crate::mvcc;
use crate::raft::network::{ForwardReply, ForwardRequest, PeerPool};
use crate::raft::state_machine::Shared;
use crate::raft::{Member, Metrics, Raft};

/// How long a proposal or a read barrier may take before the client hears "request timed out".
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// One store member as its services see it.
pub struct Node {
    pub id: u64,
    pub cluster_id: u64,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub cfg: StoreConfig,
    pub lessor: lease::Lessor,
    pub peers: PeerPool,
    db_size: Mutex<Option<(Instant, u64)>>,
    /// Raft term and leader (0 = none), kept current by [`Node::follow_metrics`].
    term: AtomicU64,
    leader: AtomicU64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

/// Column families whose size counts against the quota.
const SIZED_CFS: [&str; 5] = [
    mvcc::CF_KV,
    mvcc::CF_LEASE,
    mvcc::CF_META,
    crate::raft::log_store::CF_LOG,
    crate::raft::log_store::CF_RAFT_META,
];

impl Node {
    /// Assembles a member from its parts.
    pub fn new(
        id: u64,
        cluster_id: u64,
        raft: Raft,
        shared: Arc<Shared>,
        cfg: StoreConfig,
    ) -> Self {
        Node {
            id,
            cluster_id,
            raft,
            shared,
            cfg,
            lessor: lease::Lessor::default(),
            peers: PeerPool::default(),
            db_size: Mutex::new(None),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
        }
    }

    /// The request limits in force.
    pub fn limits(&self) -> Limits {
        Limits {
            max_txn_ops: self.cfg.max_txn_ops,
        }
    }

    /// A response header at revision `rev`.
    pub fn header(&self, rev: i64) -> ResponseHeader {
        let term = self.term.load(Ordering::Relaxed);
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision: rev,
            raft_term: term,
        }
    }

    /// Fills in a header that the state machine left with only a revision.
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h
            .as_ref()
            .map_or_else(|| self.shared.mvcc.rev(), |h| h.revision);
        *h = Some(self.header(rev));
    }

    /// Size of the member's database on disk and in memory, refreshed at most every 100 ms.
    pub fn db_size(&self) -> u64 {
        let mut cached = self.db_size.lock();
        if let Some((at, size)) = *cached
            && at.elapsed() < Duration::from_millis(100)
        {
            return size;
        }
        let db = self.shared.mvcc.db();
        let mut total = 0u64;
        for name in SIZED_CFS {
            if let Some(cf) = db.cf_handle(name) {
                for prop in [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ] {
                    total += db
                        .property_int_value_cf(cf, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
        }
        *cached = Some((Instant::now(), total));
        total
    }

    /// etcd's quota check for requests that add data: fails with NOSPACE, and raises the
    /// alarm when the database has grown past the quota.
    pub async fn check_quota(&self, cost: usize) -> EtcdResult<()> {
        let nospace = AlarmType::Nospace as i32;
        if self.shared.alarms().iter().any(|a| a.alarm == nospace) {
            return Err(EtcdError::NoSpace);
        }
        if self.db_size() + cost as u64 > self.cfg.quota() {
            tracing::warn!(
                quota = self.cfg.quota(),
                "storage quota exceeded, raising NOSPACE"
            );
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.id,
                alarm: nospace,
            };
            self.propose(Command::Alarm(req)).await?;
            return Err(EtcdError::NoSpace);
        }
        Ok(())
    }

    /// Proposes a command through Raft and waits for its result. On a follower the command is
    /// forwarded to the leader.
    pub async fn propose(&self, cmd: Command) -> EtcdResult<CommandResult> {
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.propose_inner(cmd))
            .await
            .map_err(|_| EtcdError::Timeout)??;
        match res {
            CommandResult::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    async fn propose_inner(&self, cmd: Command) -> EtcdResult<CommandResult> {
        match self.raft.client_write(cmd.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f.leader_node.ok_or(EtcdError::NoLeader)?;
                match self.forward(&leader, ForwardRequest::Write(cmd)).await? {
                    ForwardReply::Write(r) => Ok(r),
                    other => Err(EtcdError::internal(format!(
                        "unexpected forward reply {other:?}"
                    ))),
                }
            }
            Err(RaftError::APIError(e)) => Err(EtcdError::internal(e)),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    async fn forward(&self, leader: &Member, req: ForwardRequest) -> EtcdResult<ForwardReply> {
        let url = leader.peer_urls.first().ok_or(EtcdError::NoLeader)?;
        self.peers.forward(url, &req).await
    }

    /// Waits until this member's state reflects every write acknowledged before the call:
    /// the read index protocol, run by the leader.
    pub async fn read_barrier(&self) -> EtcdResult<()> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.read_barrier_inner())
            .await
            .map_err(|_| EtcdError::Timeout)?
    }

    async fn read_barrier_inner(&self) -> EtcdResult<()> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                let leader = f.leader_node.ok_or(EtcdError::NoLeader)?;
                let ForwardReply::ReadIndex(index) =
                    self.forward(&leader, ForwardRequest::ReadIndex).await?
                else {
                    return Err(EtcdError::internal("unexpected forward reply"));
                };
                self.raft
                    .wait(Some(REQUEST_TIMEOUT))
                    .applied_index_at_least(Some(index), "read index")
                    .await
                    .map_err(|_| EtcdError::Timeout)?;
                Ok(())
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(EtcdError::NoLeader)
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// The read index on the leader: the log index a follower must apply before reading.
    pub async fn leader_read_index(&self) -> EtcdResult<u64> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(read.log_id().index),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(EtcdError::NoLeader)
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Whether the cluster has a leader right now.
    pub fn has_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) != 0
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) == self.id
    }

    /// A copy of the current Raft metrics.
    pub fn metrics(&self) -> Metrics {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// Keeps the cached term and leader current until Raft stops.
    pub async fn follow_metrics(self: Arc<Self>) {
        use openraft::async_runtime::WatchReceiver;
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_watched();
                self.term.store(m.current_term, Ordering::Relaxed);
                self.leader
                    .store(m.current_leader.unwrap_or(0), Ordering::Relaxed);
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Checks the encoded size of a client request against --max-request-bytes.
    pub fn check_size(&self, len: usize) -> EtcdResult<()> {
        if len > self.cfg.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        Ok(())
    }
}
