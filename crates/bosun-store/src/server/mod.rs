//! The services of a member, over its Raft handle and state machine: the etcd v3 gRPC
//! services its clients call (KV, Watch, Lease, Cluster, Maintenance, `/health`), and the peer
//! service its peers call ([`peer`], with the typed `Forward` requests of [`forward`]). They all
//! stand on [`Replica`], which runs a request on the leader or forwards it there.

pub mod cluster;
pub mod forward;
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod membership;
pub mod metrics;
pub mod peer;
mod read_batch;
pub mod watch;
pub(crate) mod write_batch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_proto::etcdserverpb::{
    AlarmRequest, AlarmType, ResponseHeader, alarm_request::AlarmAction,
};
use openraft::ReadPolicy;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use parking_lot::Mutex;

use self::forward::{
    ChangeMember, Forward, LeaseKeepAlive, LeaseRemaining, PeerTerm, ReadIndex, Write,
};
use self::membership::{MemberOp, MemberReply};
use self::read_batch::ReadBatch;
use self::write_batch::WriteBatcher;
use crate::apply::{Command, CommandResult, Limits};
use crate::config::StoreConfig;
use crate::error::{EtcdError, EtcdResult};
use crate::mvcc;
use crate::raft::state_machine::Shared;
use crate::raft::transport::PeerPool;
use crate::raft::{Metrics, Raft};

/// How long a proposal or a read barrier may take before the client hears "request timed out".
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Pause before asking again while the cluster has no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What a write that Raft refused tells the client.
fn write_error(e: ClientWriteError<crate::raft::TypeConfig>) -> EtcdError {
    match e {
        // Not appended: this member does not lead (any more).
        ClientWriteError::ForwardToLeader(_) => EtcdError::NotLeader,
        e => EtcdError::internal(e),
    }
}

/// One member's replica of the store, as its services see it: its Raft handle, the state
/// machine's shared state, its options and peers. (Not a Kubernetes Node: Bosun's Nodes are
/// API objects; this is a member of the store's Raft group.)
pub struct Replica {
    pub id: u64,
    pub cluster_id: u64,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub cfg: StoreConfig,
    pub lessor: lease::Lessor,
    pub peers: PeerPool,
    db_size: Mutex<Option<(Instant, u64)>>,
    /// The Raft log's database (the state machine's is `shared.mvcc`'s).
    log_db: Arc<rocksdb::DB>,
    /// Serialises membership changes on the leader.
    member_change_lock: tokio::sync::Mutex<()>,
    /// Raft term and leader (0 = none), kept current by [`Replica::follow_metrics`].
    term: AtomicU64,
    leader: AtomicU64,
    /// The leader's ID and peer URL, for forwarding without a look at the membership.
    leader_url: Mutex<Option<(u64, Arc<str>)>>,
    /// The peers that make a quorum with this member in every configuration (each follower
    /// of a three-member cluster), kept current by [`Replica::follow_metrics`], and which of
    /// them the leader asks to confirm its read index
    /// ([`Replica::read_index_confirmed_by_peer`]).
    confirming_peers: Mutex<Vec<(u64, Arc<str>)>>,
    confirming_peer: AtomicUsize,
    /// Read indexes confirmed as leader by one peer, and by a heartbeat round.
    peer_confirmations: AtomicU64,
    heartbeat_rounds: AtomicU64,
    /// Coalesces concurrent read-index requests into one round trip to the leader.
    reads: ReadBatch,
    /// On the leader: coalesces the read-index requests of all members (its own readers' and
    /// those forwarded by the others) into one confirmation of leadership.
    leader_reads: ReadBatch,
    /// Batches writes on their way into Raft: forwarded to the leader, or proposed here.
    writes: WriteBatcher,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id).finish()
    }
}

impl Replica {
    /// Assembles a member from its parts.
    pub fn new(
        id: u64,
        cluster_id: u64,
        raft: Raft,
        shared: Arc<Shared>,
        cfg: StoreConfig,
        peers: PeerPool,
        log_db: Arc<rocksdb::DB>,
    ) -> Self {
        let writes = WriteBatcher::spawn(raft.clone(), peers.clone());
        Replica {
            id,
            cluster_id,
            raft,
            shared,
            cfg,
            lessor: lease::Lessor::default(),
            peers,
            db_size: Mutex::new(None),
            log_db,
            member_change_lock: tokio::sync::Mutex::new(()),
            term: AtomicU64::new(0),
            leader: AtomicU64::new(0),
            leader_url: Mutex::new(None),
            confirming_peers: Mutex::new(Vec::new()),
            confirming_peer: AtomicUsize::new(0),
            peer_confirmations: AtomicU64::new(0),
            heartbeat_rounds: AtomicU64::new(0),
            reads: ReadBatch::default(),
            leader_reads: ReadBatch::default(),
            writes,
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

    /// Every column family of the member's two databases, the state machine's and the log's.
    pub fn databases(&self) -> impl Iterator<Item = (&rocksdb::DB, &'static str)> {
        let state: &rocksdb::DB = self.shared.mvcc.db();
        let log: &rocksdb::DB = &self.log_db;
        (mvcc::STATE_CFS.into_iter().map(move |cf| (state, cf)))
            .chain(crate::storage::LOG_CFS.into_iter().map(move |cf| (log, cf)))
    }

    /// Size of the member's databases on disk and in memory, refreshed at most every 100 ms.
    pub fn db_size(&self) -> u64 {
        let mut cached = self.db_size.lock();
        if let Some((at, size)) = *cached
            && at.elapsed() < Duration::from_millis(100)
        {
            return size;
        }
        let mut total = 0u64;
        for (db, name) in self.databases() {
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
        self.to_leader(Write(cmd)).await
    }

    /// Runs `req` on the leader: here when this member leads, else forwarded to it. While
    /// there is no leader, or the request reached a member that no longer leads (so nothing
    /// was done), it waits for a leader and tries again, within [`REQUEST_TIMEOUT`]. Fails
    /// with [`EtcdError::NoLeader`] only when nothing was proposed, and with
    /// [`EtcdError::Timeout`] when the outcome is unknown.
    async fn to_leader<R: Forward>(&self, req: R) -> EtcdResult<R::Reply> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let attempt = async {
                match self.leader_member() {
                    None => Err(EtcdError::NoLeader),
                    Some((id, _)) if id == self.id => req.clone().serve(self).await,
                    Some((_, url)) => req.clone().send(self, url).await,
                }
            };
            // Timing out while the request is out means its outcome is unknown.
            match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => return Err(EtcdError::Timeout),
                Ok(Err(EtcdError::NoLeader | EtcdError::NotLeader)) => {
                    if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(EtcdError::NoLeader);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(r) => return r,
            }
        }
    }

    /// The leader and its peer URL, as this member knows them.
    fn leader_member(&self) -> Option<(u64, Arc<str>)> {
        self.leader_url.lock().clone()
    }

    /// Waits until this member's state reflects every write acknowledged before the call:
    /// the read index protocol, run by the leader.
    pub async fn read_barrier(&self) -> EtcdResult<()> {
        let index = self
            .reads
            .run(|| async {
                // The term after every read of this round arrived (see read_index_confirmed_by).
                let term = self.raft_term().await?;
                self.to_leader(ReadIndex {
                    from: self.id,
                    term,
                })
                .await
            })
            .await?;
        // Usually applied already (always on the leader); waiting clones the Raft metrics.
        if self.shared.applied_index() >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| EtcdError::Timeout)?;
        Ok(())
    }

    /// On the leader, the read index for a member `from` that asked in Raft term `term`, when
    /// the request itself confirms that this member still leads; `None` when a heartbeat round
    /// must confirm it instead ([`Replica::leader_read_index`]).
    ///
    /// The read index protocol needs a quorum to acknowledge this leader's term after the reads
    /// arrived, so that no newer leader can have acknowledged a write before them. `from` read
    /// its term `term` after its reads arrived; if `term` is not above this leader's, `from`
    /// had voted in no later term by then, nor had this leader (it still leads in its term now).
    /// When the two of them are a quorum of every configuration, no leader of a later term can
    /// have been elected before the reads arrived, so everything acknowledged before them was
    /// committed by this leader or its predecessors. They are then at or below this leader's
    /// commit index, once it has committed an entry of its own term (its first entry, which
    /// follows every entry of earlier terms). In a three-member cluster every follower's request
    /// qualifies, which saves the heartbeat round to the other members: one round trip between
    /// two members instead of two.
    async fn read_index_confirmed_by(&self, from: u64, term: u64) -> Option<u64> {
        let me = self.id;
        if from == me {
            return None;
        }
        self.raft
            .with_raft_state(move |st| {
                let vote = st.vote_ref();
                let leading = st.server_state == openraft::ServerState::Leader
                    && vote.is_committed()
                    && vote.leader_id().node_id == me;
                if !leading || term > vote.leader_id().term {
                    return None;
                }
                let configs = st
                    .membership_state
                    .effective()
                    .membership()
                    .get_joint_config();
                let quorum = pair_is_quorum(configs, me, from);
                let committed = st.local_committed()?;
                (quorum && committed.leader_id.term == vote.leader_id().term)
                    .then_some(committed.index)
            })
            .await
            .ok()
            .flatten()
    }

    /// The read index on the leader: the log index a follower must apply before reading.
    /// One peer's term confirms it where that peer and this leader are a quorum
    /// ([`Replica::read_index_confirmed_by_peer`]); otherwise, or when that fails, Raft's
    /// heartbeat round to every member does.
    pub async fn leader_read_index(&self) -> EtcdResult<u64> {
        if let Some(index) = self.read_index_confirmed_by_peer().await {
            self.peer_confirmations.fetch_add(1, Ordering::Relaxed);
            return Ok(index);
        }
        self.heartbeat_rounds.fetch_add(1, Ordering::Relaxed);
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

    /// On the leader, a read index confirmed by asking one peer its term: the peer's answer
    /// is read after the reads of the round arrived, so it serves as a follower's
    /// [`ReadIndex`] request does ([`Replica::read_index_confirmed_by`]). One call to one
    /// peer, where Raft's heartbeat round goes to every member through both members' Raft
    /// cores. `None` when no peer makes a quorum with this member, or the peer did not
    /// answer within a heartbeat interval (the next round asks the next peer).
    async fn read_index_confirmed_by_peer(&self) -> Option<u64> {
        let (id, url) = {
            let peers = self.confirming_peers.lock();
            if peers.is_empty() {
                return None;
            }
            peers[self.confirming_peer.load(Ordering::Relaxed) % peers.len()].clone()
        };
        let wait = Duration::from_millis(self.cfg.heartbeat_interval);
        let term =
            match tokio::time::timeout(wait, forward::send(&self.peers, &url, PeerTerm)).await {
                Ok(Ok(term)) => term,
                _ => {
                    self.confirming_peer.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            };
        self.read_index_confirmed_by(id, term).await
    }

    /// This member's Raft term, as its Raft core holds it: never below the term of any vote
    /// it has granted.
    async fn raft_term(&self) -> EtcdResult<u64> {
        self.raft
            .with_raft_state(|st| st.vote_ref().leader_id().term)
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    /// A lease keep-alive, run wherever the leader is: the granted TTL, or 0 when the lease
    /// does not exist.
    pub async fn lease_keep_alive(&self, id: i64) -> EtcdResult<i64> {
        self.to_leader(LeaseKeepAlive(id)).await
    }

    /// Seconds left on a lease by the leader's clock; -1 when it does not exist.
    pub async fn lease_remaining(&self, id: i64) -> EtcdResult<i64> {
        self.to_leader(LeaseRemaining(id)).await
    }

    fn leader_keep_alive(&self, id: i64) -> EtcdResult<i64> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        // The leader's state machine may trail its log by a little: a lease granted a moment
        // ago and not applied here yet is missed, as it is by etcd's lessor.
        match self.shared.mvcc.lease(id) {
            Some((ttl, _)) => {
                self.lessor.refresh(id, ttl);
                Ok(ttl)
            }
            None => Ok(0),
        }
    }

    fn leader_lease_remaining(&self, id: i64) -> EtcdResult<i64> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        Ok(match self.shared.mvcc.lease(id) {
            Some((ttl, _)) => self.lessor.remaining(id, ttl),
            None => -1,
        })
    }

    /// Applies a membership change through the leader.
    pub async fn member_change(&self, op: MemberOp) -> EtcdResult<MemberReply> {
        self.to_leader(ChangeMember(op)).await
    }

    /// Whether member `id` has been removed from the cluster for good.
    pub fn is_removed(&self, id: u64) -> bool {
        self.shared.is_removed(id)
    }

    /// Whether the cluster has a leader right now.
    pub fn has_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) != 0
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) == self.id
    }

    /// Read-index counts: linearizable reads served, rounds this member asked the leader
    /// for, and as leader, read indexes confirmed by one peer and by a heartbeat round.
    pub fn read_index_counts(&self) -> (u64, u64, u64, u64) {
        let (rounds, reads) = self.reads.counts();
        (
            reads,
            rounds,
            self.peer_confirmations.load(Ordering::Relaxed),
            self.heartbeat_rounds.load(Ordering::Relaxed),
        )
    }

    /// A copy of the current Raft metrics.
    pub fn metrics(&self) -> Metrics {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// Keeps the cached term and leader current until Raft stops.
    pub async fn follow_metrics(self: Arc<Self>) {
        use openraft::async_runtime::WatchReceiver;
        // The server metrics change with the vote, leader or membership only, not on every
        // append and apply as the full metrics do.
        let mut rx = self.raft.server_metrics();
        let mut known = (0, None);
        loop {
            {
                let m = rx.borrow_watched();
                let term = m.vote.leader_id().term;
                self.term.store(term, Ordering::Relaxed);
                self.leader
                    .store(m.current_leader.unwrap_or(0), Ordering::Relaxed);
                // Like etcd's "elected leader at term N": a leader change is in every member's
                // log, so that a fault's history can be read from the logs afterwards.
                if known != (term, m.current_leader) {
                    known = (term, m.current_leader);
                    match m.current_leader {
                        Some(id) if id == self.id => {
                            tracing::info!(term, "this member is the leader")
                        }
                        Some(id) => {
                            tracing::info!(term, leader = format!("{id:x}"), "leader known")
                        }
                        None => tracing::info!(term, "no leader known"),
                    }
                }
                // Allocate only when the leader changes.
                let url = m.current_leader.and_then(|id| {
                    let node = m.membership_config.membership().get_node(&id)?;
                    Some((id, node.peer_urls.first()?.as_str()))
                });
                let mut cached = self.leader_url.lock();
                if cached.as_ref().map(|(id, u)| (*id, &**u)) != url {
                    *cached = url.map(|(id, u)| (id, Arc::from(u)));
                }
                drop(cached);
                let membership = m.membership_config.membership();
                let configs = membership.get_joint_config();
                let confirming: Vec<(u64, Arc<str>)> = membership
                    .voter_ids()
                    .filter(|&id| id != self.id && pair_is_quorum(configs, self.id, id))
                    .filter_map(|id| {
                        let url = membership.get_node(&id)?.peer_urls.first()?;
                        Some((id, Arc::from(url.as_str())))
                    })
                    .collect();
                let mut peers = self.confirming_peers.lock();
                if *peers != confirming {
                    *peers = confirming;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The checks a client's write passes before it is proposed: etcd's validation, the size
    /// and txn limits, and the storage quota for writes that add data. A member runs them for
    /// its clients' writes, and again for writes that peers forward to it: the peer port takes
    /// messages of up to 64 MiB from whoever connects, so a forwarded write must not skip them.
    pub async fn check_write(&self, cmd: &Command) -> EtcdResult<()> {
        use prost::Message;
        let adds = match cmd {
            Command::Put(p) => {
                self.check_size(p.encoded_len())?;
                crate::apply::check_put(p)?;
                Some(p.encoded_len())
            }
            Command::DeleteRange(d) => {
                self.check_size(d.encoded_len())?;
                if d.key.is_empty() {
                    return Err(EtcdError::EmptyKey);
                }
                None
            }
            Command::Txn(t) => {
                self.check_size(t.encoded_len())?;
                crate::apply::check_txn(t, self.limits())?;
                kv::adds_data(t).then(|| t.encoded_len())
            }
            Command::LeaseGrant(g) => {
                if g.ttl > lease::MAX_LEASE_TTL {
                    return Err(EtcdError::LeaseTtlTooLarge);
                }
                // The proposer picks the ID (0 means "none" to etcd's lessor).
                if g.id == 0 {
                    return Err(EtcdError::LeaseNotFound);
                }
                Some(0)
            }
            Command::LeaseRevoke(_) | Command::Compact(_) | Command::Alarm(_) => None,
            // The leader makes batches out of single writes; nobody sends one.
            Command::Batch(_) => {
                return Err(EtcdError::internal("a batch is not a client request"));
            }
        };
        match adds {
            Some(cost) => self.check_quota(cost).await,
            None => Ok(()),
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

/// Whether members `a` and `b` together are a majority of every configuration in `configs`
/// (one, or two during a joint change).
fn pair_is_quorum(configs: &[std::collections::BTreeSet<u64>], a: u64, b: u64) -> bool {
    configs.iter().all(|voters| {
        let acked = usize::from(voters.contains(&a)) + usize::from(a != b && voters.contains(&b));
        acked * 2 > voters.len()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::pair_is_quorum;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_pair_is_a_quorum_of_every_configuration_or_not() {
        let three = [set(&[1, 2, 3])];
        assert!(pair_is_quorum(&three, 1, 2));
        assert!(!pair_is_quorum(&three, 1, 1), "one member is no pair");
        assert!(!pair_is_quorum(&three, 1, 4), "4 is no voter");
        assert!(!pair_is_quorum(&[set(&[1, 2, 3, 4, 5])], 1, 2));
        assert!(!pair_is_quorum(&[set(&[1, 2, 3, 4])], 1, 2), "two of four");
        assert!(pair_is_quorum(&[set(&[1])], 1, 1), "a lone voter");
        // During a joint change, both configurations count.
        let joint = [set(&[1, 2, 3]), set(&[1, 2, 4])];
        assert!(pair_is_quorum(&joint, 1, 2));
        assert!(!pair_is_quorum(&joint, 1, 3));
    }
}
