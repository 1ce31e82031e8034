//! Batching of the writes a member forwards to the leader.
//!
//! Under load most client writes reach followers (clients spread over all members), and a
//! `Forward` call per write costs a round of HTTP/2 framing, encoding and task wake-ups on
//! both sides. Writes queue here instead; a sender takes everything queued (up to
//! [`MAX_BATCH`]) into one `WriteBatch` call, with at most [`IN_FLIGHT`] calls out at once, so
//! a lone write goes out at once and a crowd shares calls. Each write keeps its own outcome:
//! the leader proposes them one by one and answers each.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apply::Command;
use crate::error::{EtcdError, EtcdResult};
use crate::raft::network::{ForwardReply, ForwardRequest, PeerPool};

/// Most writes in one call.
pub const MAX_BATCH: usize = 256;
/// Most calls out at once.
pub const IN_FLIGHT: usize = 4;
/// Writes queued before callers wait.
const QUEUE: usize = 4096;

struct Pending {
    url: Arc<str>,
    cmd: Command,
    reply: oneshot::Sender<EtcdResult<ForwardReply>>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct WriteForwarder {
    tx: mpsc::Sender<Pending>,
}

impl WriteForwarder {
    /// Starts the sender task; it ends when the last forwarder is dropped.
    pub fn spawn(peers: PeerPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(peers, rx));
        WriteForwarder { tx }
    }

    /// Forwards one write to the leader at `url`, with [`PeerPool::forward`]'s outcomes:
    /// `NoLeader` when it was certainly not sent, `Timeout` when it may have been applied.
    pub async fn forward(&self, url: Arc<str>, cmd: Command) -> EtcdResult<ForwardReply> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { url, cmd, reply })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        // The sender dropped the write without an answer: it may have gone out.
        rx.await.map_err(|_| EtcdError::Timeout)?
    }
}

async fn run(peers: PeerPool, mut rx: mpsc::Receiver<Pending>) {
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
        let peers = peers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // Normally all go to the one leader; after a leader change, some to another.
            while let Some(url) = batch.first().map(|p| p.url.clone()) {
                let (same, rest): (Vec<Pending>, Vec<Pending>) =
                    batch.into_iter().partition(|p| p.url == url);
                batch = rest;
                send(&peers, &url, same).await;
            }
        });
    }
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
        Ok(ForwardReply::WriteBatch(rs)) if rs.len() == n => rs
            .into_iter()
            .map(|r| match r {
                ForwardReply::Error(e) => Err(e),
                r => Ok(r),
            })
            .collect(),
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
