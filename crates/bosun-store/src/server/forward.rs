//! The `Forward` call: what a member asks of the leader on its clients' behalf (writes, read
//! index, lease keep-alives and remaining TTLs, membership changes), or of any member (the
//! member list, for joining).
//!
//! Each kind of request is a type implementing [`Forward`], which names its reply type and
//! serves it on the member that receives it. [`ForwardRequest`] is the envelope that travels
//! (postcard-encoded); the reply travels as `EtcdResult<Reply>`. Both sides take the reply
//! type from the request's, so a reply of the wrong kind cannot be produced or expected.

use std::future::Future;
use std::io;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Replica;
use super::membership::{MemberOp, MemberReply};
use super::write_batch;
use crate::apply::{Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};
use crate::limits::MAX_BATCH;
use crate::raft::transport::PeerPool;
use crate::raft::{Member, encode};

/// A request of the `Forward` call, with the type of its answer.
pub trait Forward: Clone + Into<ForwardRequest> + Send + Sync + 'static {
    /// What the member serving the request answers, when it does not fail.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// Serves the request on `replica`, which leads (or, for [`Members`], on any member).
    fn serve(self, replica: &Replica) -> impl Future<Output = EtcdResult<Self::Reply>> + Send;

    /// Serves the request as it arrived on the peer port. Writes are checked first, as a
    /// client's are: the peer port is no way around a client limit.
    fn serve_forwarded(
        self,
        replica: &Replica,
    ) -> impl Future<Output = EtcdResult<Self::Reply>> + Send {
        self.serve(replica)
    }

    /// Sends the request to the leader at `url`.
    fn send(
        self,
        replica: &Replica,
        url: Arc<str>,
    ) -> impl Future<Output = EtcdResult<Self::Reply>> + Send {
        async move { send(&replica.peers, &url, self).await }
    }
}

/// Sends `req` to the member at `url` in a `Forward` call, with [`PeerPool::forward`]'s
/// outcomes.
pub async fn send<R: Forward>(peers: &PeerPool, url: &str, req: R) -> EtcdResult<R::Reply> {
    let req: ForwardRequest = req.into();
    peers.forward(url, &req).await
}

/// Propose a command. The answer is never [`CommandResult::Error`]: that is an `Err`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Write(pub Command);

/// Propose several commands, each answered on its own, in order (see `server::write_batch`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteBatch(pub Vec<Command>);

/// Run the read index protocol and return the index to wait for. `from` is the member asking
/// and `term` its Raft term, read after the reads it asks for arrived: when the two of them
/// make a quorum, the request itself confirms the leadership (see
/// `Replica::read_index_confirmed_by`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReadIndex {
    pub from: u64,
    pub term: u64,
}

/// A keep-alive of a lease: the leader owns the expiry clocks. Answers the granted TTL, or 0
/// when the lease does not exist.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaseKeepAlive(pub i64);

/// Seconds left on a lease by the leader's clock; -1 when the lease does not exist.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaseRemaining(pub i64);

/// A membership change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeMember(pub MemberOp);

/// The Raft term of the member asked, read in its Raft core when the request arrives: the
/// leader asks a peer to confirm its read index (`Replica::read_index_confirmed_by_peer`).
/// Served by any member.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PeerTerm;

/// The cluster ID and the members, for a member that joins.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Members;

/// The answer to [`Members`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembersReply {
    pub cluster_id: u64,
    pub members: Vec<(u64, Member)>,
}

macro_rules! envelope {
    ($($variant:ident($request:ty)),* $(,)?) => {
        /// A `Forward` call's request as it travels: one variant per kind of request.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum ForwardRequest {
            $($variant($request),)*
        }

        $(impl From<$request> for ForwardRequest {
            fn from(r: $request) -> Self {
                ForwardRequest::$variant(r)
            }
        })*

        impl ForwardRequest {
            /// Serves a request that arrived on the peer port and encodes its answer, an
            /// `EtcdResult` of the request's reply type.
            pub async fn serve_forwarded(self, replica: &Replica) -> io::Result<Vec<u8>> {
                match self {
                    $(ForwardRequest::$variant(r) => encode(&r.serve_forwarded(replica).await),)*
                }
            }
        }
    };
}

// The variants' order is the wire format's: new kinds go at the end.
envelope!(
    Write(Write),
    WriteBatch(WriteBatch),
    ReadIndex(ReadIndex),
    LeaseKeepAlive(LeaseKeepAlive),
    LeaseRemaining(LeaseRemaining),
    Member(ChangeMember),
    Members(Members),
    PeerTerm(PeerTerm),
);

impl Forward for Write {
    type Reply = CommandResult;

    async fn serve(self, replica: &Replica) -> EtcdResult<CommandResult> {
        replica.writes.propose(self.0).await
    }

    async fn serve_forwarded(self, replica: &Replica) -> EtcdResult<CommandResult> {
        replica.check_write(&self.0).await?;
        self.serve(replica).await
    }

    /// Writes to the leader share calls (see `server::write_batch`).
    async fn send(self, replica: &Replica, url: Arc<str>) -> EtcdResult<CommandResult> {
        replica.writes.forward(url, self.0).await
    }
}

impl Forward for WriteBatch {
    type Reply = Vec<EtcdResult<CommandResult>>;

    async fn serve(self, replica: &Replica) -> EtcdResult<Self::Reply> {
        let mut replies = Vec::with_capacity(self.0.len());
        write_batch::propose_many(&replica.raft, self.0, |r| replies.push(r)).await;
        Ok(replies)
    }

    /// Each write is checked on its own; a refused one gets its error in its place.
    async fn serve_forwarded(self, replica: &Replica) -> EtcdResult<Self::Reply> {
        let cmds = self.0;
        if cmds.len() > MAX_BATCH {
            return Err(EtcdError::internal(format!(
                "a batch of {} writes is above the limit of {MAX_BATCH}",
                cmds.len(),
            )));
        }
        // In order: the refused writes' errors, and places for the others' replies.
        let mut replies = Vec::with_capacity(cmds.len());
        let mut checked = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            match replica.check_write(&cmd).await {
                Ok(()) => {
                    replies.push(None);
                    checked.push(cmd);
                }
                Err(e) => replies.push(Some(Err(e))),
            }
        }
        let mut results = Vec::with_capacity(checked.len());
        write_batch::propose_many(&replica.raft, checked, |r| results.push(r)).await;
        let mut results = results.into_iter();
        Ok(replies
            .into_iter()
            .map(|r| {
                r.or_else(|| results.next())
                    .unwrap_or(Err(EtcdError::Stopped))
            })
            .collect())
    }
}

impl Forward for ReadIndex {
    type Reply = u64;

    async fn serve(self, replica: &Replica) -> EtcdResult<u64> {
        match replica.read_index_confirmed_by(self.from, self.term).await {
            Some(index) => Ok(index),
            None => {
                replica
                    .leader_reads
                    .run(|| replica.leader_read_index())
                    .await
            }
        }
    }
}

impl Forward for PeerTerm {
    type Reply = u64;

    async fn serve(self, replica: &Replica) -> EtcdResult<u64> {
        replica.raft_term().await
    }
}

impl Forward for LeaseKeepAlive {
    type Reply = i64;

    async fn serve(self, replica: &Replica) -> EtcdResult<i64> {
        replica.leader_keep_alive(self.0)
    }
}

impl Forward for LeaseRemaining {
    type Reply = i64;

    async fn serve(self, replica: &Replica) -> EtcdResult<i64> {
        replica.leader_lease_remaining(self.0)
    }
}

impl Forward for ChangeMember {
    type Reply = MemberReply;

    async fn serve(self, replica: &Replica) -> EtcdResult<MemberReply> {
        replica.leader_member_change(self.0).await
    }
}

impl Forward for Members {
    type Reply = MembersReply;

    async fn serve(self, replica: &Replica) -> EtcdResult<MembersReply> {
        Ok(MembersReply {
            cluster_id: replica.cluster_id,
            members: replica
                .metrics()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.clone()))
                .collect(),
        })
    }
}
