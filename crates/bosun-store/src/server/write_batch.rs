//! Batching of writes on their way into Raft.
//!
//! Under load most client writes reach followers (clients spread over all members), and a
//! `Forward` call per write costs a round of HTTP/2 framing, encoding and task wake-ups on
//! both sides. On the leader, a proposal per write costs a message to Raft, a log append and a
//! replication message per follower. Writes queue here instead; a sender takes everything
//! queued (up to [`MAX_BATCH`]) into one `WriteBatch` call to the leader, or on the leader into
//! one proposal of all of them, with at most [`IN_FLIGHT`] batches out at once, so a lone write
//! goes out at once and a crowd shares calls and log appends. Each write keeps its own
//! outcome.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apply::Command;
use crate::error::{EtcdError, EtcdResult};
use crate::raft::Raft;
use crate::raft::network::{ForwardReply, ForwardRequest, PeerPool};

/// Most writes in one call.
pub const MAX_BATCH: usize = 256;
/// Most calls out at once.
pub const IN_FLIGHT: usize = 4;
/// Writes queued before callers wait.
const QUEUE: usize = 4096;

/// Where a write goes: proposed here (this member leads) or to the leader at a peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Local,
    Leader(Arc<str>),
}

struct Pending {
    target: Target,
    cmd: Command,
    reply: oneshot::Sender<EtcdResult<ForwardReply>>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<Pending>,
}

impl WriteBatcher {
    /// Starts the sender task; it ends when the last batcher is dropped.
    pub fn spawn(raft: Raft, peers: PeerPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, peers, rx));
        WriteBatcher { tx }
    }

    async fn submit(&self, target: Target, cmd: Command) -> EtcdResult<ForwardReply> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { target, cmd, reply })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        // The sender dropped the write without an answer: it may have gone out.
        rx.await.map_err(|_| EtcdError::Timeout)?
    }

    /// Forwards one write to the leader at `url`, with [`PeerPool::forward`]'s outcomes:
    /// `NoLeader` when it was certainly not sent, `Timeout` when it may have been applied.
    pub async fn forward(&self, url: Arc<str>, cmd: Command) -> EtcdResult<ForwardReply> {
        self.submit(Target::Leader(url), cmd).await
    }

    /// Proposes one write on this member, which leads: `NotLeader` when it was not appended.
    pub async fn propose(&self, cmd: Command) -> EtcdResult<ForwardReply> {
        self.submit(Target::Local, cmd).await
    }
}

/// Proposes several writes on this member, the leader, in one message to Raft (appended
/// together); `answer` gets each one's reply, in order, as soon as it is applied: one call per
/// command, `Stopped` (outcome unknown) for those Raft stopped before answering.
pub async fn propose_many(raft: &Raft, cmds: Vec<Command>, mut answer: impl FnMut(ForwardReply)) {
    let n = cmds.len();
    let mut answered = 0;
    if let Ok(mut results) = raft.client_write_many(cmds).await {
        while let Some(r) = results.next().await {
            answer(match r {
                Ok(Ok(w)) => ForwardReply::Write(w.response),
                Ok(Err(e)) => ForwardReply::Error(super::write_error(e)),
                Err(_) => ForwardReply::Error(EtcdError::Stopped),
            });
            answered += 1;
        }
    }
    for _ in answered..n {
        answer(ForwardReply::Error(EtcdError::Stopped));
    }
}

async fn run(raft: Raft, peers: PeerPool, mut rx: mpsc::Receiver<Pending>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the calls in flight were out goes in this one.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (raft, peers) = (raft.clone(), peers.clone());
        tokio::spawn(async move {
            let _permit = permit;
            // Normally all go to the one leader; after a leader change, some to another.
            while let Some(target) = batch.first().map(|p| p.target.clone()) {
                let (same, rest): (Vec<Pending>, Vec<Pending>) =
                    batch.into_iter().partition(|p| p.target == target);
                batch = rest;
                match target {
                    Target::Local => propose(&raft, same).await,
                    Target::Leader(url) => send(&peers, &url, same).await,
                }
            }
        });
    }
}

async fn propose(raft: &Raft, group: Vec<Pending>) {
    let (cmds, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let mut replies = replies.into_iter();
    propose_many(raft, cmds, |r| {
        if let Some(tx) = replies.next() {
            let _ = tx.send(r.into_result());
        }
    })
    .await;
}

async fn send(peers: &PeerPool, url: &str, group: Vec<Pending>) {
    let (mut cmds, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let n = cmds.len();
    let req = match n {
        0 => return,
        1 => ForwardRequest::Write(cmds.swap_remove(0)),
        _ => ForwardRequest::WriteBatch(cmds),
    };
    let results: Vec<EtcdResult<ForwardReply>> = match peers.forward(url, &req).await {
        Ok(ForwardReply::WriteBatch(rs)) if rs.len() == n => {
            rs.into_iter().map(ForwardReply::into_result).collect()
        }
        Ok(r @ ForwardReply::Write(_)) if n == 1 => vec![Ok(r)],
        Ok(other) => {
            let e = EtcdError::internal(format!("unexpected forward reply {other:?}"));
            vec![Err(e); n]
        }
        Err(e) => vec![Err(e); n],
    };
    for (tx, r) in replies.into_iter().zip(results) {
        let _ = tx.send(r);
    }
}
