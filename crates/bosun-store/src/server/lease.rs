//! The etcd Lease service, and the leader's lessor that decides expiry.
//!
//! Leases and their keys are state-machine data, replicated through the log. Expiry times are
//! not: they live in memory on the leader, which refreshes them on keep-alive and, when one
//! passes, proposes the revocation through the log, so every member deletes the same keys at
//! the same revision. A new leader starts every lease's clock afresh, as etcd does.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bosun_proto::etcdserverpb::lease_server::Lease;
use bosun_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::Replica;
use crate::apply::{Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How often the leader looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// Expiry clocks, kept by the leader.
#[derive(Debug, Default)]
pub struct Lessor {
    expiry: Mutex<HashMap<i64, Instant>>,
    revoking: Mutex<HashSet<i64>>,
    id_counter: AtomicU64,
}

impl Lessor {
    /// Restarts the clock of lease `id`.
    pub fn refresh(&self, id: i64, ttl: i64) {
        let ttl = Duration::from_secs(u64::try_from(ttl.max(0)).unwrap_or(0));
        self.expiry.lock().insert(id, Instant::now() + ttl);
    }

    /// Seconds left on lease `id`; a lease without a clock yet has its full TTL.
    pub fn remaining(&self, id: i64, ttl: i64) -> i64 {
        match self.expiry.lock().get(&id) {
            Some(at) => {
                i64::try_from(at.saturating_duration_since(Instant::now()).as_secs()).unwrap_or(0)
            }
            None => ttl,
        }
    }

    fn expiry_of(&self, id: i64) -> Option<Instant> {
        self.expiry.lock().get(&id).copied()
    }

    /// A new lease ID as etcd makes them: the member ID's low 16 bits, a millisecond
    /// timestamp and a counter, never negative or zero.
    pub fn next_id(&self, member_id: u64) -> i64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let base = ((member_id & 0xffff) << 48) | ((ms & 0xff_ffff_ffff) << 8);
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let id = (base.wrapping_add(n) & (u64::MAX >> 1)) as i64;
        id.max(1)
    }
}

/// The leader's expiry loop: runs until `shutdown` fires.
pub async fn expiry_loop(replica: Arc<Replica>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut was_leader = false;
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let leader = replica.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        let leases = replica.shared.mvcc.leases();
        if !was_leader {
            // A new leader gives every lease a full TTL from now.
            let mut exp = replica.lessor.expiry.lock();
            exp.clear();
            let now = Instant::now();
            for (id, ttl) in &leases {
                exp.insert(
                    *id,
                    now + Duration::from_secs(u64::try_from(*ttl).unwrap_or(0)),
                );
            }
            was_leader = true;
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut exp = replica.lessor.expiry.lock();
            let live: HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
            exp.retain(|id, _| live.contains(id));
            for (id, ttl) in &leases {
                let at = *exp
                    .entry(*id)
                    .or_insert_with(|| now + Duration::from_secs(u64::try_from(*ttl).unwrap_or(0)));
                if at <= now {
                    expired.push(*id);
                }
            }
        }
        for id in expired {
            if !replica.lessor.revoking.lock().insert(id) {
                continue;
            }
            let n = replica.clone();
            tokio::spawn(async move {
                let res = n
                    .propose(Command::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await;
                match res {
                    Ok(_) | Err(EtcdError::LeaseNotFound) => {
                        tracing::debug!(lease = format!("{id:016x}"), "lease expired and revoked")
                    }
                    Err(e) => {
                        tracing::warn!(lease = format!("{id:016x}"), error = %e, "revoking expired lease failed")
                    }
                }
                n.lessor.revoking.lock().remove(&id);
            });
        }
    }
}

/// The Lease service of one member.
#[derive(Debug, Clone)]
pub struct LeaseService {
    pub replica: Arc<Replica>,
}

impl LeaseService {
    /// The smallest TTL granted: 1.5 election timeouts, rounded up to whole seconds.
    fn min_ttl(&self) -> i64 {
        let ms = self.replica.cfg.election_timeout.saturating_mul(3) / 2;
        i64::try_from(ms.div_ceil(1000)).unwrap_or(1).max(1)
    }

    /// Keep-alive of one lease: the granted TTL, or 0 when the lease does not exist. The
    /// leader owns the clocks, so a follower passes the keep-alive on to it.
    async fn keep_alive_one(&self, id: i64) -> EtcdResult<i64> {
        self.replica.lease_keep_alive(id).await
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut g = req.into_inner();
        if g.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        g.ttl = g.ttl.max(self.min_ttl());
        if g.id == 0 {
            g.id = self.replica.lessor.next_id(self.replica.id);
        }
        let cmd = Command::LeaseGrant(g);
        self.replica.check_write(&cmd).await?;
        match self.replica.propose(cmd).await? {
            CommandResult::LeaseGrant(mut r) => {
                self.replica.lessor.refresh(r.id, r.ttl);
                self.replica.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .replica
            .propose(Command::LeaseRevoke(req.into_inner()))
            .await?
        {
            CommandResult::LeaseRevoke(mut r) => {
                self.replica.fill(&mut r.header);
                Ok(Response::new(r))
            }
            other => Err(other.unexpected().into()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = input.message().await {
                let header = svc.replica.header(svc.replica.shared.mvcc.rev());
                let resp = match svc.keep_alive_one(r.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(header),
                        id: r.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        // Seconds left by the leader's clock; then the keys as of every write before now.
        let remaining = self.replica.lease_remaining(r.id).await?;
        self.replica.read_barrier().await?;
        let header = Some(self.replica.header(self.replica.shared.mvcc.rev()));
        let resp = match self.replica.shared.mvcc.lease(r.id) {
            None => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Some((ttl, keys)) => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: if remaining < 0 { ttl } else { remaining },
                granted_ttl: ttl,
                keys: if r.keys { keys } else { Vec::new() },
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.replica.read_barrier().await?;
        let mut leases = self.replica.shared.mvcc.leases();
        // etcd lists leases by expiry, soonest first.
        leases.sort_by_key(|(id, _)| (self.replica.lessor.expiry_of(*id), *id));
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            leases: leases
                .into_iter()
                .map(|(id, _)| LeaseStatus { id })
                .collect(),
        }))
    }
}
